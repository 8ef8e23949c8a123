-- wrk script for bench/serving.py: POST one fixed body over and over, print a JSON summary.
--
--   wrk -t1 -c64 -d5s -s bench/wrk/post.lua URL -- BODY_FILE [count] ["Header: value" ...]
--
-- BODY_FILE holds the exact request body (V2 JSON or V2 binary). "count" counts responses
-- by status code; it is off by default because defining response() makes wrk parse every
-- header into Lua, which costs the load generator CPU that the server under test needs.
-- done() prints one line: "MLRT_WRK {json}" with latency percentiles in microseconds.

local counting = false
local threads = {}
statuses = {}

local function count_response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local f = assert(io.open(args[1], "rb"))
   wrk.method = "POST"
   wrk.body = f:read("*a")
   f:close()
   for i = 2, #args do
      if args[i] == "count" then
         counting = true
         -- wrk checks for a global response() after init(), so defining it here turns it on.
         response = count_response
      else
         local k, v = args[i]:match("^([^:]+):%s*(.*)$")
         wrk.headers[k] = v
      end
   end
end

function done(summary, latency, requests)
   local counts = {}
   for _, t in ipairs(threads) do
      local s = t:get("statuses")
      if s then
         for code, n in pairs(s) do
            counts[code] = (counts[code] or 0) + n
         end
      end
   end
   local parts = {}
   local ok = 0
   for code, n in pairs(counts) do
      table.insert(parts, string.format('"%d":%d', code, n))
      if code == 200 then
         ok = n
      end
   end
   -- Latencies are recorded for every response, 200 or not. The k-th slowest response of all is
   -- at least as slow as the k-th slowest 200, so with k = 1% of the 200s this percentile of all
   -- responses is an upper bound on the p99 of the 200s alone.
   local p99_ok_bound = -1
   if ok > 0 and summary.requests > 0 then
      p99_ok_bound = latency:percentile(100 - ok / summary.requests)
   end
   local e = summary.errors
   io.write(string.format(
      'MLRT_WRK {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"non_2xx":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
      '"mean_us":%.1f,"p99_200_bound_us":%d,"statuses":{%s}}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      p99_ok_bound, table.concat(parts, ",")))
end
