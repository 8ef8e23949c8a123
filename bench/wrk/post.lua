-- wrk script for bench/serving.py: POST one fixed body over and over, print a JSON summary.
--
--   wrk -t1 -c64 -d5s -s bench/wrk/post.lua URL -- BODY_FILE ["Header: value" ...]
--
-- BODY_FILE holds the exact request body (V2 JSON or V2 binary). Responses are not parsed
-- in Lua (a response() hook makes wrk hand every header to Lua, which costs the load
-- generator the CPU the server under test needs); bench/serving.py reads status counts
-- from the server's own metrics instead. done() prints one line: "MLRT_WRK {json}" with
-- latency percentiles in microseconds.

function init(args)
   local f = assert(io.open(args[1], "rb"))
   wrk.method = "POST"
   wrk.body = f:read("*a")
   f:close()
   for i = 2, #args do
      local k, v = args[i]:match("^([^:]+):%s*(.*)$")
      wrk.headers[k] = v
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   -- Latencies are recorded for every response, 2xx or not. The k-th slowest response of all
   -- is at least as slow as the k-th slowest 2xx one, so with k = 1% of the 2xx answers this
   -- percentile of all responses is an upper bound on the p99 of the 2xx answers alone.
   local ok = summary.requests - e.status
   local p99_ok_bound = -1
   if ok > 0 and summary.requests > 0 then
      p99_ok_bound = latency:percentile(100 - ok / summary.requests)
   end
   io.write(string.format(
      'MLRT_WRK {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"non_2xx":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
      '"mean_us":%.1f,"p99_2xx_bound_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      p99_ok_bound))
end
