"""Assertions that keep tests on random weights honest.

A random model can put every frame on one code or decode to near silence; equality of
constant codes, or an absolute 1e-4 bound on audio peaking at 1e-5, passes whatever the
code under test does. These helpers check the comparison can fail before making it:
codes must vary, the expected audio must not be near zero, and the audio tolerance is
relative to the expected signal's peak. Near-tie helpers cap the share of frames they
excuse (:func:`assert_tie_share`).
"""

from __future__ import annotations

import torch

# Below this peak the expected audio is "near zero": a comparison with it proves nothing.
MIN_PEAK = 1e-3
# Near-tie helpers may excuse at most this share of the codes they compare.
MAX_TIE_SHARE = 0.01


def peak(signal: torch.Tensor) -> float:
    """max |signal| over every element, as a float."""
    return float(signal.detach().abs().max()) if signal.numel() else 0.0


def assert_codes_vary(codes: torch.Tensor, min_distinct: int = 2, *, what: str = "codes") -> None:
    """``codes`` (any shape) hold at least ``min_distinct`` (>= 2) distinct values.

    Use it on the codes a test compares: equal constant codes would pass with a broken encoder.
    """
    min_distinct = max(2, min_distinct)
    distinct = int(codes.unique().numel())
    assert distinct >= min_distinct, (
        f"{what}: only {distinct} distinct value(s) among {codes.numel()} codes, need >= {min_distinct}; "
        "a comparison of near-constant codes cannot fail"
    )


def assert_not_near_zero(signal: torch.Tensor, *, min_peak: float = MIN_PEAK, what: str = "audio") -> float:
    """``signal`` peaks above ``min_peak``; returns the peak."""
    signal_peak = peak(signal)
    assert signal_peak > min_peak, (
        f"{what}: peak {signal_peak:.3e} <= {min_peak:.0e}; a comparison with near silence cannot fail"
    )
    return signal_peak


def assert_close_to_peak(
    actual: torch.Tensor,
    expected: torch.Tensor,
    rtol_of_peak: float = 1e-4,
    *,
    min_peak: float = MIN_PEAK,
    what: str = "audio",
) -> float:
    """max |actual - expected| <= ``rtol_of_peak`` x peak(expected), with the peak above ``min_peak``.

    Shapes must be equal. Returns the error relative to the peak (for reports).
    """
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    expected_peak = assert_not_near_zero(expected, min_peak=min_peak, what=f"{what} (expected)")
    error = (
        float((actual.detach().double() - expected.detach().double()).abs().max()) if actual.numel() else 0.0
    )
    relative = error / expected_peak
    assert relative <= rtol_of_peak, (
        f"{what}: max |difference| {error:.3e} is {relative:.2e} of the peak {expected_peak:.3e}, "
        f"over the {rtol_of_peak:.0e} allowed"
    )
    return relative


def assert_tie_share(
    excused: int, total: int, *, what: str = "codes", max_share: float = MAX_TIE_SHARE
) -> None:
    """At most ``max_share`` of ``total`` compared codes were excused as proven near-ties.

    Each excused code must already have been proven a tie by the caller; this caps how many
    there may be, so a systematic error that happens to sit near rounding boundaries still
    fails. The share is printed (shown with ``pytest -s`` / in the failure message).
    """
    share = excused / max(total, 1)
    message = f"{what}: {excused} of {total} codes differ at proven near-ties ({share:.2%}, at most {max_share:.0%})"
    if excused:
        print(message)
    assert share <= max_share, message
