"""Fuzz the ``run`` flags: whatever a user types, the CLI exits 2 (bad input) or 3 (target
unreachable) with a one-line error — never a traceback, never a hang.

The scenarios aim at a closed loopback port with a 0.2 s connect timeout, so a run whose
flags are all valid ends fast at the probe (exit 3) instead of generating load. The CLI is
called in-process through ``loadtest.cli.main.main`` (a subprocess per example would cost ~1 s
of imports): an exception that is not ``SystemExit`` fails the test, as a traceback would.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from loadtest.cli.main import main

UNREACHABLE = "ws://127.0.0.1:9/v2/chat"
BASE = """
name: fuzz
target: {{url: "{url}", api_key_env: FUZZ_NO_SUCH_VAR}}
load: {load}
session:
  steps:
    - gen: {{prompt: "hi"}}
timeouts: {{connect: 200ms, first_token: 1s, stream: 1s}}
"""
LOADS = {
    "closed": "{mode: closed, concurrency: 2, duration: 1s}",
    "open": "{mode: open, rate: 5, duration: 1s}",
}

_numberish = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1e309", "nan", "inf", "-inf", "0x10", "1_000", "", " ", "1.5", "2**64"]),
)
_durationish = st.one_of(
    _numberish,
    st.sampled_from(["1s", "500ms", "-5s", "0s", "1e309s", "2m", "1h", "1.5s", "s", "10x", "ms", "1 s"]),
    st.text(max_size=12),
)
_targetish = st.one_of(
    st.sampled_from([
        UNREACHABLE, "wss://127.0.0.1:9/v2/chat", "ws://127.0.0.1:0/v2/chat", "http://127.0.0.1:9/",
        "ws://127.0.0.1:9/v2/chat?apikey=leak", "ws://user:pw@127.0.0.1:9/", "ws://", "ws:///x",
        "ws://127.0.0.1:99999/", "ws://[::1]:9/v2/chat", "", "ws://127.0.0.1:9/ x",
    ]),
    # random text, but never a resolvable host name (a DNS lookup could outlive the timeout)
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20).filter(lambda t: "." not in t),
).filter(lambda t: t != "mock")
_textish = st.one_of(_numberish, st.text(max_size=10))

_VALID = {
    "--duration": st.sampled_from(["1s", "500ms", "2m", "1h", "3"]),
    "--concurrency": st.integers(1, 10_000).map(str),
    "--rate": st.floats(0.01, 1e6).map(repr),
    "--requests": st.integers(1, 10**9).map(str),
    "--seed": st.integers(-(2**70), 2**70).map(str),
    "--target": st.just(UNREACHABLE),
}
_ANY = {
    "--duration": _durationish,
    "--concurrency": _textish,
    "--rate": _textish,
    "--requests": _textish,
    "--seed": _textish,
    "--target": _targetish,
}
# mostly valid values, so that many examples get past validation to the probe (exit 3)
FLAGS = {flag: st.one_of(_VALID[flag], _VALID[flag], _ANY[flag]) for flag in _ANY}


@st.composite
def _flags(draw: st.DrawFn) -> list[str]:
    args: list[str] = []
    for flag, values in FLAGS.items():
        if draw(st.booleans()):
            value = draw(values)
            # "--flag=value" keeps values that start with "-" from being read as options
            args.append(f"{flag}={value}")
    return args


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    old = sys.argv
    sys.argv = ["loadtest", *argv]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main()
            except SystemExit as exc:
                code = exc.code
            else:
                code = 0
    finally:
        sys.argv = old
    assert isinstance(code, int), code
    return code, err.getvalue()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(sorted(LOADS)), flags=_flags())
def test_bad_run_flags_exit_2_or_3_without_traceback(tmp_path: Path, mode: str, flags: list[str]) -> None:
    scenario = tmp_path / f"{mode}.yaml"
    scenario.write_text(BASE.format(url=UNREACHABLE, load=LOADS[mode]), encoding="utf-8")
    with tempfile.TemporaryDirectory(dir=tmp_path) as out:
        code, err = _run(["run", str(scenario), "--api-key", "k-fuzz", "--out", str(Path(out) / "r"),
                          "--no-html", "-q", *flags])
    event(f"exit {code}")
    assert code in (2, 3), (code, flags, err)
    assert "Traceback" not in err
    assert err.strip(), "an error exit must say why"
    assert "k-fuzz" not in err and "apikey=leak" not in err


@pytest.mark.parametrize(("flag", "value"), [
    ("--duration", "1e309s"), ("--duration", "nan"), ("--rate", "inf"), ("--rate", "nan"),
    ("--concurrency", "0"), ("--requests", "-1"), ("--seed", "1.5"), ("--target", "http://x/"),
])
def test_known_bad_values_exit_2(tmp_path: Path, flag: str, value: str) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(BASE.format(url=UNREACHABLE, load=LOADS["closed"]), encoding="utf-8")
    code, err = _run(["run", str(scenario), "--api-key", "k", "--out", str(tmp_path / "r"), "-q",
                      f"{flag}={value}"])
    assert code == 2, err
    assert flag in err or flag.lstrip("-") in err, err
