"""The one rule for an input sent in a datatype other than the model's.

NumPy and scikit-learn make float64 arrays by default and Python's ints become int64,
so a request (V2 JSON or binary, msgpack, Arrow), a `runtime.client` call or an
in-process `predict` often carries a tensor in a datatype the model does not take. It
is converted to the model's datatype when the conversion cannot change what kind of
value it is:

- any float to any float, rounded to nearest (exactly numpy's `astype`);
- BOOL and any integer to any float;
- an integer to a wider integer that holds every value of its type (INT32 -> INT64,
  UINT8 -> INT16, UINT16 -> UINT32).

Everything else is refused with a message that names the input, both datatypes and
what would be accepted: float to integer, narrowing integers, signed to unsigned,
unsigned to a signed type no wider than itself, BOOL to or from an integer, anything
to or from BYTES. A finite value the model's datatype cannot hold (1e39 into FP32,
70000 into FP16), which numpy would turn into an infinity, is refused too; NaN and
infinities are data and stay as they are.

`check_inputs` (runtime/models/base.py) applies this after decoding, for every body
format and transport of the server and for `runtime.load(...).predict`, so each sees
the same rule and the same messages. docs/formats.md ("Datatypes") states it for users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .datatypes import V2_TO_NUMPY, numpy_dtype
from .errors import InvalidInput

__all__ = ["convert", "converts", "refusal"]


@dataclass(frozen=True, slots=True)
class _Conversion:
    dtype: np.dtype  # the model's
    # The model's largest finite float when some finite value of the sent datatype exceeds
    # it (a wider float; a wide integer into FP16), else None: no range check is needed.
    limit: float | None


_INTEGERS = [n for n, d in V2_TO_NUMPY.items() if d.kind in "iu"]


def _plan(sent: str, want: str) -> _Conversion | str:
    """How `sent` becomes `want`, or why it does not (the middle of the refusal message)."""
    src, dst = V2_TO_NUMPY[sent], V2_TO_NUMPY[want]
    if want == "BYTES":
        return "numbers do not convert to text (send the values as strings)"
    if sent == "BYTES":
        return "text converts to no other datatype (send the values as numbers)"
    if dst.kind == "f":
        limit = float(np.finfo(dst).max)
        if src.kind == "f":
            return _Conversion(dst, limit if src.itemsize > dst.itemsize else None)
        fits = src.kind == "b" or int(np.iinfo(src).max) <= limit
        return _Conversion(dst, None if fits else limit)
    if dst.kind == "b":
        return "a BOOL input takes BOOL only"
    if src.kind == "f":
        return "a float would lose its fraction or not fit"
    if src.kind == "b":
        return "BOOL converts to float datatypes only"
    if src.kind == "i" and dst.kind == "u":
        return f"{want} cannot hold negative values"
    # Integer to integer: same signedness and wider, or unsigned to a wider signed type.
    if dst.itemsize > src.itemsize:
        return _Conversion(dst, None)
    return f"{want} cannot hold every {sent} value"


_PLANS: dict[tuple[str, str], _Conversion | str] = {
    (s, w): _plan(s, w) for s in V2_TO_NUMPY for w in V2_TO_NUMPY if s != w
}


def converts(sent: str, want: str) -> bool:
    """Whether a tensor sent as V2 datatype `sent` is taken by an input of datatype `want`
    (its values may still be out of range: see `convert`)."""
    return sent == want or isinstance(_PLANS.get((sent, want)), _Conversion)


def _accepted_for(want: str) -> str:
    others = [s for s in V2_TO_NUMPY if s != want and converts(s, want)]
    if not others:
        return ""
    ints = [s for s in others if s in _INTEGERS]
    if len(ints) == len(_INTEGERS):
        words = [s for s in others if s not in _INTEGERS]
        words.insert(1 if others[0] == "BOOL" else 0, "any integer datatype")
    else:
        words = others
    return f" or one that converts to it ({', '.join(words)})"


def refusal(name: str, sent: str, want: str) -> str | None:
    """The message refusing input `name` sent as `sent` for a model that takes `want`, or
    None when it is converted."""
    if sent == want:
        return None
    plan = _PLANS.get((sent, want))
    if plan is None:
        numpy_dtype(sent)  # an unknown datatype: InvalidInput naming it
        numpy_dtype(want)
    if isinstance(plan, _Conversion):
        return None
    return f"input '{name}': the model takes {want}, not {sent}: {plan}; send {want}{_accepted_for(want)}"


def convert(name: str, arr: np.ndarray, sent: str, want: str) -> np.ndarray:
    """`arr`, input `name` sent as V2 datatype `sent`, in the model's datatype `want`.

    Raises InvalidInput when the pair is refused or a finite value does not fit `want`.
    """
    plan = _PLANS.get((sent, want)) if sent != want else None
    if not isinstance(plan, _Conversion):
        message = refusal(name, sent, want)
        if message is not None:
            raise InvalidInput(message)
        return arr
    limit = plan.limit
    if limit is None or _surely_fits(arr, limit):
        return arr.astype(plan.dtype)
    with np.errstate(over="ignore"):  # the overflows are found below, value by value
        out = arr.astype(plan.dtype)
    flat_out = out.reshape(-1)
    overflowed = np.isinf(flat_out)
    if overflowed.any():
        flat_in = arr.reshape(-1)
        if flat_in.dtype.kind == "f":
            overflowed &= np.isfinite(flat_in)  # an infinity sent is data
        if overflowed.any():
            value = flat_in[int(np.argmax(overflowed))].item()
            raise InvalidInput(
                f"input '{name}': {value!r} (sent as {sent}) is out of range for the model's "
                f"{want}, whose largest finite value is {plan.limit:.8g}; NaN and infinities "
                "are taken as they are"
            )
    return out


def _surely_fits(arr: np.ndarray, limit: float) -> bool:
    """A cheap test that no value of `arr` exceeds `limit`; False when it cannot vouch
    for that (a large or non-finite value), and `convert` then tests value by value."""
    if arr.dtype.kind == "f":
        # No value exceeds the square root of the sum of squares: one pass, one numpy call
        # (a row's min and max cost two, or Python floats). NaN and infinities fail the
        # test; the halved limit leaves room for the sum's rounding.
        return bool(np.vdot(arr, arr) <= (limit / 2) ** 2)
    return arr.size == 0 or bool(-limit <= arr.min() and arr.max() <= limit)
