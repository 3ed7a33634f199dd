"""Request classes, goodput and tokens (issue 19) judged against a server that shares none of
the harness's code (tests/support/rawserver.py, behaviour ``classes``).

The server adds a known delay to the first chunk of every gen that carries web search (and
another to one that carries tools), streams chunks of several words (some words split across
two chunks) at absolute deadlines, and logs per gen what it saw, what it intended, when it read
the gen, sent the first chunk and the stop, and the text of every chunk. Each harness row is
joined to the server's gen by ``conversationId`` (unique per gen), and the harness's figures
(summary.json ``by_tag``, ``goodput``, ``tokens``; requests.csv) are held against that truth:

1. per-tag TTFT p50/p99 against the server's per class (within the bare-client floor:
   tests/support/tolerances.py) and per-tag counts against the server's counts per class;
2. a failing per-tag SLO exits 1 and names its tag; a tag that can occur but no request
   carried exits 1 ("no requests carried this tag"); a tag that can never occur is exit 2;
3. the goodput share equals what requests.csv gives by the same rule;
4. output tokens per row and in total exact against the server's text, tokenized by the same
   (word-level, built here) tokenizer; ``tpot_token`` = the gap over the tokens per chunk.

One harness run (module-scoped) serves 1, 2a, 3 and 4; 2b is one short run of its own; 2c
needs no server run (validation refuses it before anything connects).
"""

from __future__ import annotations

import socket
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.rawruns import Served, serve_and_run
from support.tolerances import GAP_SLACK_MS, MEDIAN_SLACK_MS, P50_LATENESS_MS, P99_LATENESS_MS
from tokenizers import Tokenizer, models, pre_tokenizers

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
         "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
         "uniform", "victor", "whiskey", "xray", "yankee", "zulu"]
WORDS_PER_CHUNK = 3
GAP_MS = 10.0
BASE_TTFT_MS = 40.0
WEB_DELAY_MS = 150.0
TOOLS_DELAY_MS = 60.0
OPTIONS: dict[str, Any] = {
    "ttft_ms": BASE_TTFT_MS, "gap_ms": GAP_MS, "chunks": 6, "chunks_spread": 4,
    "words_per_chunk": WORDS_PER_CHUNK, "split_words": True, "web_search_delay_ms": WEB_DELAY_MS,
    "tools_delay_ms": TOOLS_DELAY_MS, "words": WORDS,
}
ASK_PROMPT = "alpha bravo charlie delta"
#: below every web-search TTFT (>= BASE + WEB_DELAY = 190 ms): the per-tag SLO must fail
WEB_TTFT_LIMIT_MS = 150
#: good: ttft within 220 ms (web + tools, 250 ms, is not), e2e within 265 ms (a web answer
#: of 7+ chunks is not), tpot and tpot_token limits no answer here exceeds
GOODPUT = {"ttft_ms": 220, "tpot_ms": 50, "tpot_token_ms": 20, "e2e_ms": 265}
#: an HdrHistogram percentile (3 significant digits) is the highest value of its bucket:
#: at most 1/1024 of the value above the sample, plus the summary's µs rounding
HDR_REL = 1 / 1024


def _scenario(tok: Path) -> str:
    return textwrap.dedent(f"""\
        name: classes-raw
        target: {{url: mock, tokenizer: {tok}}}
        load: {{mode: closed, concurrency: 6, duration: 4s, warmup: 0.5s, seed: 7}}
        session:
          steps:
            - gen: {{name: ask, prompt: "{ASK_PROMPT}", enableWebSearch: true, web_search_share: 0.5,
                     tags: {{tier: free}}}}
            - gen:
                prompts: ["echo foxtrot golf", "hotel india juliet kilo lima"]
                webSearch: {{mode: force, maxResults: 3}}
                web_search_share: 0.5
                tools: [{{type: function, function: {{name: lookup, description: "look it up",
                          parameters: {{type: object, properties: {{}}}}}}}}]
                tools_share: 0.4
        timeouts: {{connect: 2s, first_token: 3s, stream: 10s}}
        slo:
          ttft_p99_ms: 2000
          by_tag:
            "web_search=true": {{ttft_p99_ms: {WEB_TTFT_LIMIT_MS}}}
            "web_search=false": {{ttft_p99_ms: 1000}}
          goodput: {{ttft_ms: {GOODPUT["ttft_ms"]}, tpot_ms: {GOODPUT["tpot_ms"]},
                    tpot_token_ms: {GOODPUT["tpot_token_ms"]}, e2e_ms: {GOODPUT["e2e_ms"]}}}
          min_goodput: 0.05
        """)


def build_tokenizer(path: Path) -> Tokenizer:
    """A word-level tokenizer that knows WORDS (anything else, e.g. half a word, is [UNK])."""
    vocab = {"[UNK]": 0, **{w: i for i, w in enumerate(WORDS, 1)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return Tokenizer.from_file(str(path))


def nearest_rank(values: list[float], p: float) -> float:
    """The ``p``-th percentile as HdrHistogram picks its sample: rank ``int(p/100 * n + 0.5)``
    (at least 1) of the sorted values."""
    ordered = sorted(values)
    rank = max(1, int(p / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def row_tags(row: dict[str, str]) -> dict[str, str]:
    return dict(t.split("=", 1) for t in row["tags"].split(";") if t)


@dataclass
class Joined:
    """One harness row with the server's record of the same gen."""

    row: dict[str, str]
    gen: dict[str, Any]  # the server's gen_done line
    prompt: str

    @property
    def server_ttft_ms(self) -> float:
        return float(self.gen["t_first_mono_ns"] - self.gen["t_read_mono_ns"]) / 1e6

    @property
    def server_class(self) -> dict[str, str]:
        """The tags the server's view of this gen implies (the step by its prompt, the ask
        step's own ``tier``)."""
        ask = self.prompt == ASK_PROMPT
        return {"step": "ask" if ask else "gen2", "web_search": "true" if self.gen["web_search"] else "false",
                "tools": "true" if self.gen["tools"] else "false", **({"tier": "free"} if ask else {})}

    @property
    def measured(self) -> bool:
        return self.row["phase"] == "measure"


@dataclass
class ClassesRun:
    run: Served
    tok: Tokenizer
    joined: list[Joined]

    @property
    def output(self) -> str:
        return self.run.stdout + self.run.stderr

    def cohort(self, tag: str | None = None) -> list[Joined]:
        """The measured requests (intended inside the window), of one ``key=value`` if given,
        by the server's view of the gen."""
        out = [j for j in self.joined if j.measured]
        if tag is None:
            return out
        key, _, value = tag.partition("=")
        return [j for j in out if j.server_class.get(key) == value]


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClassesRun]:
    tmp = tmp_path_factory.mktemp("classes")
    tok = build_tokenizer(tmp / "tokenizer.json")
    run = serve_and_run(tmp, "classes", OPTIONS, _scenario(tmp / "tokenizer.json"), timeout=60)
    received = {e["conversation_id"]: e for e in run.log if e["ev"] == "gen_received"}
    done = {e["conversation_id"]: e for e in run.log if e["ev"] == "gen_done"}
    assert run.rows, run.diag()
    joined = []
    for r in run.rows:
        assert r["outcome"] == "ok", (r, run.diag())
        g = done.get(r["conversation_id"])
        assert g is not None, f"request {r['request_id']}: conversation {r['conversation_id']!r} never served"
        assert r["message_id"] == g["message_id"], (r, g)
        assert g["t_stop_mono_ns"] is not None and len(g["texts"]) == g["chunks"] == int(r["chunks"]), (r, g)
        joined.append(Joined(r, g, received[r["conversation_id"]]["prompt"]))
    # one row per gen the server received (the probe sends none), one gen per row
    assert sorted(received) == sorted(r["conversation_id"] for r in run.rows)
    yield ClassesRun(run, tok, joined)


# --- 1. per-tag TTFT and counts ---------------------------------------------------------------

def test_every_request_is_tagged_with_what_the_server_saw(classes: ClassesRun) -> None:
    """Request by request: the row's step, web_search and tools tags are what the gen frame
    carried as the server read it; both classes occurred, with both web-search kinds."""
    for j in classes.joined:
        assert row_tags(j.row) == j.server_class, (j.row, j.gen)
    seen = Counter((j.server_class["step"], j.server_class["web_search"], j.server_class["tools"])
                   for j in classes.cohort())
    for cls in (("ask", "true", "false"), ("ask", "false", "false"), ("gen2", "true", "true"),
                ("gen2", "true", "false"), ("gen2", "false", "true"), ("gen2", "false", "false")):
        assert seen[cls] >= 2, seen  # enableWebSearch and the webSearch object both served


@pytest.mark.parametrize("tag", ["web_search=true", "web_search=false"])
def test_per_tag_ttft_equals_the_servers_truth(classes: ClassesRun, tag: str) -> None:
    """by_tag[tag].latency_ms.ttft p50/p99 = the server's own first-chunk delay (first chunk
    sent − gen read) of that class's requests, at p50/p99, within the bare-client floor
    (MEDIAN_SLACK_MS at p50, P99_LATENESS_MS at p99); never below it."""
    cohort = classes.cohort(tag)
    assert len(cohort) >= 20, len(cohort)
    truth = [j.server_ttft_ms for j in cohort]
    intended = [j.gen["ttft_ms"] for j in cohort]
    # the server kept its deadlines: each first chunk at or after its intended delay
    assert min(t - i for t, i in zip(truth, intended, strict=True)) >= 0
    assert nearest_rank([t - i for t, i in zip(truth, intended, strict=True)], 50) < MEDIAN_SLACK_MS
    if tag == "web_search=true":
        assert min(intended) >= BASE_TTFT_MS + WEB_DELAY_MS
    else:
        assert max(intended) <= BASE_TTFT_MS + TOOLS_DELAY_MS
    # request by request, the harness never sees the first chunk before the server sent it
    for j in cohort:
        assert float(j.row["ttft_uncorrected_ms"]) >= j.server_ttft_ms - 0.001, (j.row, j.gen)
    ttft = classes.run.summary["by_tag"][tag]["latency_ms"]["ttft"]
    assert ttft["count"] == len(cohort)
    for p, slack in ((50, MEDIAN_SLACK_MS), (99, P99_LATENESS_MS)):
        server, harness = nearest_rank(truth, p), ttft[f"p{p}"]
        quantum = harness * HDR_REL + 0.001
        assert server - quantum <= harness <= server + slack + quantum, (tag, p, harness, server)
    # and the harness's own rows of the class give the same percentiles (no request of
    # another class in the tag's histogram)
    rows = [float(j.row["ttft_ms"]) for j in cohort]
    for p in (50, 99):
        assert abs(ttft[f"p{p}"] - nearest_rank(rows, p)) <= nearest_rank(rows, p) * HDR_REL + 0.002, (p, ttft)


def test_harness_reads_each_answer_within_the_floor(classes: ClassesRun) -> None:
    """How late the harness timestamped what the server sent (the first chunk: ttft_uncorrected
    − the server's first-chunk delay; the stop: e2e_uncorrected − the server's stop delay), over
    the measured requests: never negative, p50 within P50_LATENESS_MS, p99 within
    P99_LATENESS_MS (tests/support/tolerances.py). Every per-request figure above rests on it.
    On failure the message lists the late reads with their time in the run: a pile just after
    whole seconds is the harness's per-second work blocking its loop, not the network."""
    late: list[tuple[float, float, str]] = []
    for j in classes.cohort():
        r, g = j.row, j.gen
        t_send_s = float(r["t_send_s"])
        for column, field in (("ttft_uncorrected_ms", "t_first_mono_ns"), ("e2e_uncorrected_ms", "t_stop_mono_ns")):
            server_ms = (g[field] - g["t_read_mono_ns"]) / 1e6
            late.append((float(r[column]) - server_ms, t_send_s + server_ms / 1000, column.split("_")[0]))
    values = [d for d, _, _ in late]
    shown = sorted(((round(d, 2), f"at {t:.3f} s", what) for d, t, what in late if d > P50_LATENESS_MS),
                   key=lambda x: x[1])
    assert min(values) >= -0.001, min(late)
    assert nearest_rank(values, 50) <= P50_LATENESS_MS, shown
    assert nearest_rank(values, 99) <= P99_LATENESS_MS, shown


def test_per_tag_counts_equal_the_servers(classes: ClassesRun) -> None:
    """by_tag[tag].requests (offered, completed) = the server's gens of that class among the
    measured requests; run-wide the same; and over every phase, rows per tag = server's gens."""
    summary = classes.run.summary
    by_tag = summary["by_tag"]
    expected = {}
    for tag in ("web_search=true", "web_search=false", "tools=true", "tools=false", "step=ask",
                "step=gen2", "tier=free"):
        n = len(classes.cohort(tag))
        expected[tag] = n
        got = by_tag[tag]["requests"]
        assert (got["offered"], got["completed"], got["failed"]) == (n, n, 0), (tag, got, n)
    assert set(by_tag) == set(expected), sorted(by_tag)
    assert expected["web_search=true"] + expected["web_search=false"] == summary["requests"]["offered"] \
        == len(classes.cohort()) == summary["requests"]["completed"]
    # every phase: the rows of each class are the server's gens of that class
    server_all = Counter(f"web_search={'true' if e['web_search'] else 'false'}"
                         for e in classes.run.log if e["ev"] == "gen_received")
    rows_all = Counter(f"web_search={row_tags(r)['web_search']}" for r in classes.run.rows)
    assert rows_all == server_all


# --- 2. per-tag SLOs ----------------------------------------------------------------------------

def test_failing_per_tag_slo_exits_1_and_names_its_tag(classes: ClassesRun) -> None:
    """web_search=true ttft_p99_ms 150 (every web answer's first chunk is >= 190 ms late) fails
    while every run-wide SLO and web_search=false pass: exit 1, the tag named."""
    run = classes.run
    assert run.rc == 1, run.diag()
    s = run.summary
    assert all(v["pass"] for v in s["slo"].values()), s["slo"]
    web = s["slo_by_tag"]["web_search=true"]["ttft_p99_ms"]
    assert web["pass"] is False and web["value"] == s["by_tag"]["web_search=true"]["latency_ms"]["ttft"]["p99"]
    assert web["value"] >= BASE_TTFT_MS + WEB_DELAY_MS > WEB_TTFT_LIMIT_MS
    assert s["slo_by_tag"]["web_search=false"]["ttft_p99_ms"]["pass"] is True
    assert s["verdict"] == "failed"
    failing = [line for line in classes.output.splitlines() if "web_search=true" in line]
    assert any("ttft_p99_ms" in line and "fail" in line.lower() for line in failing), classes.output


def test_per_tag_slo_on_a_tag_no_request_carried_exits_1(tmp_path: Path) -> None:
    """Tags this scenario can produce but no request carried: the ``follow`` step never ran
    (the request cap ended the run after the users' first gens), and no ask drew web search
    (a share of 0.001 with a fixed seed). Each fails with "no requests carried this tag"; the
    tag that was carried passes; exit 1."""
    text = textwrap.dedent(f"""\
        name: classes-none
        target: {{url: mock}}
        load: {{mode: closed, concurrency: 2, duration: 5s, requests: 2, seed: 7}}
        session:
          steps:
            - gen: {{name: ask, prompt: "{ASK_PROMPT}", enableWebSearch: true, web_search_share: 0.001}}
            - gen: {{name: follow, prompt: "echo foxtrot"}}
        timeouts: {{connect: 2s, first_token: 3s, stream: 10s}}
        slo:
          ttft_p99_ms: 2000
          by_tag:
            "step=ask": {{ttft_p99_ms: 2000}}
            "step=follow": {{ttft_p99_ms: 2000}}
            "web_search=true": {{ttft_p99_ms: 2000}}
        """)
    run = serve_and_run(tmp_path, "classes", OPTIONS, text, timeout=30)
    # the server's truth: two gens, both the ask step's, neither with web search
    received = [e for e in run.log if e["ev"] == "gen_received"]
    assert [(e["prompt"], e["web_search"]) for e in received] == [(ASK_PROMPT, False)] * 2, received
    assert run.rc == 1, run.diag()
    by = run.summary["slo_by_tag"]
    assert by["step=ask"]["ttft_p99_ms"]["pass"] is True
    for tag in ("step=follow", "web_search=true"):
        verdict = by[tag]["ttft_p99_ms"]
        assert verdict["pass"] is False and verdict["value"] is None, (tag, verdict)
        assert verdict["reason"] == "no requests carried this tag"
        out = run.stdout + run.stderr
        assert any(tag in line and "no requests carried this tag" in line for line in out.splitlines()), out
    assert run.summary["verdict"] == "failed"


NEVER = {
    "web_search=true": ("web_search_share: 0", "no request of this scenario can carry web_search=true"),
    "tools=true": ("", "no request of this scenario can carry tools=true"),
    "tier=gold": ("", "no request of this scenario can carry tier=gold"),
    "region=eu": ("", "no request of this scenario carries a tag 'region'"),
    "step=follow": ("", "no request of this scenario can carry step=follow"),
}


@pytest.mark.parametrize("tag", sorted(NEVER))
def test_per_tag_slo_on_a_tag_that_can_never_occur_is_exit_2(tmp_path: Path, tag: str,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A per-tag SLO whose tag no request of the scenario can ever carry (a share of 0, a step
    with no tools, a value or key no step sets, a step that does not exist) is refused at
    validation: exit 2, the file, line and tag named, and nothing connects. Through the console
    entry point in-process (its error-to-exit-code mapping; no interpreter start per case)."""
    from loadtest.cli.main import main

    extra, message = NEVER[tag]
    path = tmp_path / "never.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: classes-never
        load: {{mode: closed, concurrency: 1, duration: 1s, seed: 7}}
        session:
          steps:
            - gen: {{name: ask, prompt: "{ASK_PROMPT}", enableWebSearch: true, tags: {{tier: free}}{', ' + extra if extra else ''}}}
        slo:
          by_tag:
            "{tag}": {{ttft_p99_ms: 2000}}
        """), encoding="utf-8")
    with socket.socket() as listener:  # a target that would see any connection attempt
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/v2/chat"
        monkeypatch.setattr("sys.argv", ["loadtest", "run", str(path), "--target", url,
                                         "--out", str(tmp_path / "run"), "--no-html", "-q"])
        with pytest.raises(SystemExit) as exited:
            main()
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing connected
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert exited.value.code == 2, out
    assert f"never.yaml:8: slo.by_tag.{tag}: {message}" in out, out  # file, line, key
    assert not (tmp_path / "run" / "summary.json").exists()


# --- 3. goodput ---------------------------------------------------------------------------------

def _good(row: dict[str, str]) -> bool:
    """The rule as docs state it, from requests.csv: completed, and within every limit named
    (a figure the request does not have is not held against it)."""
    if row["outcome"] != "ok":
        return False
    for column, limit in (("ttft_ms", "ttft_ms"), ("tpot_ms", "tpot_ms"), ("tpot_token_ms", "tpot_token_ms"),
                          ("e2e_ms", "e2e_ms")):
        if row[column] != "" and float(row[column]) > GOODPUT[limit]:
            return False
    return True


@pytest.mark.parametrize("tag", [None, "web_search=true", "web_search=false", "tools=true", "step=ask"])
def test_goodput_share_equals_requests_csv(classes: ClassesRun, tag: str | None) -> None:
    """goodput {good, offered, share, per_s} (run-wide and per tag) = requests.csv's measured
    rows (the cohort: intended inside the window) that completed within every limit, over the
    measured rows; per_s: good answers that ended inside the window, per second of it."""
    s = classes.run.summary
    rows = [r for r in classes.run.rows if r["phase"] == "measure" and (tag is None or tag in r["tags"].split(";"))]
    good = sum(_good(r) for r in rows)
    got = s["goodput"] if tag is None else s["by_tag"][tag]["goodput"]
    assert got["rule"] == {k: float(v) for k, v in GOODPUT.items()}
    assert (got["good"], got["offered"]) == (good, len(rows)), (tag, got, good, len(rows))
    assert got["share"] == round(good / len(rows), 6)
    # per second of the window: good answers that ended inside it, whatever their phase (like
    # every rate: throughput.requests_per_s counts the same answers, good or not)
    lo, hi = s["window"]["start_s"], s["window"]["end_s"]
    ended = [r for r in classes.run.rows if (tag is None or tag in r["tags"].split(";"))
             and r["t_stop_s"] and lo <= float(r["t_stop_s"]) < hi]
    assert got["per_s"] == round(sum(_good(r) for r in ended) / s["measure_s"], 3)
    tput = s["throughput"] if tag is None else s["by_tag"][tag]["throughput"]
    assert got["per_s"] <= tput["requests_per_s"]
    if tag is None:
        assert 0 < good < len(rows)  # the rule bites: the figure is not trivially 0 or 1
        assert s["slo"]["min_goodput"]["value"] == got["share"]
        # every warmup row is outside: the cohort is the phase, not everything in the file
        assert any(r["phase"] == "warmup" for r in classes.run.rows)


# --- 4. tokens ----------------------------------------------------------------------------------

def _tokens(tok: Tokenizer, texts: list[str]) -> tuple[int, int]:
    """(tokens of the joined text, tokens that start inside the first chunk)."""
    enc = tok.encode("".join(texts), add_special_tokens=False)
    first = sum(1 for start, _ in enc.offsets if start < len(texts[0]))
    return len(enc.ids), first


def test_output_tokens_exact_against_the_servers_text(classes: ClassesRun) -> None:
    """output_tokens, first_chunk_tokens and prompt_tokens of every completed row = the server's
    logged answer text (joined) and received prompt, tokenized by the same tokenizer; the
    summary's totals = the sums over the measured rows, per tag too. The server's words span
    chunk boundaries, so counting chunk by chunk would give more."""
    tok = classes.tok
    for j in classes.joined:
        texts = j.gen["texts"]
        out, first = _tokens(tok, texts)
        assert sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts) > out  # the test can tell
        assert (int(j.row["output_tokens"]), int(j.row["first_chunk_tokens"])) == (out, first), (j.row, texts)
        assert out == j.gen["chunks"] * WORDS_PER_CHUNK and first == WORDS_PER_CHUNK
        assert int(j.row["prompt_tokens"]) == len(tok.encode(j.prompt, add_special_tokens=False).ids), j.row
    s = classes.run.summary
    for tag in (None, "web_search=true", "web_search=false", "step=gen2"):
        cohort = classes.cohort(tag)
        got = s["tokens"] if tag is None else s["by_tag"][tag]["tokens"]
        total = sum(_tokens(tok, j.gen["texts"])[0] for j in cohort)
        prompts = sum(len(tok.encode(j.prompt, add_special_tokens=False).ids) for j in cohort)
        chunks = sum(len(j.gen["texts"]) for j in cohort)
        assert got["tokenizer"].endswith("tokenizer.json")
        assert (got["output_total"], got["prompt_total"], got["answers"]) == (total, prompts, len(cohort)), (tag, got)
        assert got["per_chunk_mean"] == round(total / chunks, 4)


def test_tpot_token_is_the_gap_over_tokens_per_chunk(classes: ClassesRun) -> None:
    """tpot_token per row = (t_last − t_first) / (output_tokens − first_chunk_tokens) from the
    row's own columns; against the server's truth (its first and last chunk send times over
    its text's tokens after the first chunk) within the floor (p50 of the difference within
    GAP_SLACK_MS per token, the median lateness it implies within P50_LATENESS_MS); and its
    median = gap_ms / words per chunk, as the server streamed it."""
    diffs, spread = [], []
    for j in classes.joined:
        r = j.row
        n = int(r["output_tokens"]) - int(r["first_chunk_tokens"])
        own = (float(r["t_last_s"]) - float(r["t_first_s"])) * 1000 / n
        assert abs(float(r["tpot_token_ms"]) - own) <= 0.001 / n + 0.0006, r  # µs columns, 3-decimal ms
        g = j.gen
        chunk_times = [e["t_mono_ns"] for e in classes.run.log
                       if e["ev"] == "frame_sent" and e.get("conversation_id") == g["conversation_id"]
                       and e["kind"] == "chunk"]
        out, first = _tokens(classes.tok, g["texts"])
        server = (chunk_times[-1] - g["t_first_mono_ns"]) / 1e6 / (out - first)
        # the server kept its last chunk's deadline
        assert chunk_times[-1] - g["t_read_mono_ns"] >= (g["ttft_ms"] + g["gap_ms"] * (len(g["texts"]) - 1)) * 1e6
        diffs.append(float(r["tpot_token_ms"]) - server)
        # times n: the difference between how late the client read the last and the first chunk
        spread.append(abs(float(r["tpot_token_ms"]) - server) * n)
    assert abs(nearest_rank(diffs, 50)) < GAP_SLACK_MS / WORDS_PER_CHUNK, sorted(diffs)
    assert nearest_rank(spread, 50) <= P50_LATENESS_MS, sorted(spread)
    tpot_token = classes.run.summary["latency_ms"]["tpot_token"]
    assert tpot_token["count"] == len(classes.cohort())
    assert abs(tpot_token["p50"] - GAP_MS / WORDS_PER_CHUNK) < GAP_SLACK_MS / WORDS_PER_CHUNK, tpot_token
    for tag in ("web_search=true", "web_search=false"):
        per = classes.run.summary["by_tag"][tag]["latency_ms"]["tpot_token"]
        assert abs(per["p50"] - GAP_MS / WORDS_PER_CHUNK) < GAP_SLACK_MS / WORDS_PER_CHUNK, (tag, per)
