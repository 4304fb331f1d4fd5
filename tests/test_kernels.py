"""The GEMM burn and the memtest engines on CPU tensors, with faults planted at their seams."""

import threading

import pytest

torch = pytest.importorskip("torch", reason="the engines need torch (dhc[engines])")

from dhc.kernels import gemm, memtest, memtest_host, patterns  # noqa: E402


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


@pytest.mark.parametrize(("refs", "outvoted", "no_majority"), [
    ([t(1, 2), t(1, 2), t(1, 2)], [], False),
    ([t(1, 2), t(1, 3), t(1, 2)], [1], False),
    ([t(1, 2), t(1, 3)], [], True),
    ([t(1, 2), t(1, 3), t(1, 4)], [], True),
    ([t(1, 2), t(1, 2), t(9, 9), t(8, 8), t(1, 2)], [2, 3], False),
    ([t(1, 2)], [], False),
])
def test_vote(refs, outvoted, no_majority):
    assert gemm.vote(refs) == (outvoted, no_majority)


def test_vote_is_bitwise_not_numeric():
    assert gemm.vote([t(0.0), t(-0.0), t(0.0)]) == ([1], False)  # -0.0 == 0.0 numerically, not in bits


def test_clean_burn_on_cpu():
    result = gemm.burn(["cpu"], "fp32", 256, duration_s=0.3)
    [worker] = result.workers
    assert worker.iterations >= 3 and worker.tflops > 0
    assert (worker.mismatched_iterations, worker.nonfinite_elements, result.outvoted) == (0, 0, [])


def test_planted_faults_are_seen_where_planted():
    inject = gemm.GemmInjection(flip_bit_worker=1, differ_worker=2, slow_worker=0, flip_at_iteration=1)
    result = gemm.burn(["cpu"] * 3, "fp32", 192, duration_s=0.5, inject=inject)
    flipped = result.workers[1]
    assert (flipped.mismatched_iterations, flipped.mismatched_words, flipped.first_mismatch_iteration) == (1, 1, 1)
    assert result.workers[0].mismatched_iterations == result.workers[2].mismatched_iterations == 0
    assert result.outvoted == [2]
    assert result.workers[0].tflops < result.workers[1].tflops


def test_bf16_burn_uses_bitwise_views():
    result = gemm.burn(["cpu", "cpu"], "bf16", 64, duration_s=0.1)
    assert result.outvoted == [] and all(w.mismatched_iterations == 0 for w in result.workers)


MiB = 2**20


def test_clean_memtest_covers_every_pattern():
    result = memtest.memtest("cpu", 8 * MiB, 4 * MiB, 256 * 1024)
    assert (result.errors, result.chunks, result.bytes_covered) == (0, 2, 8 * MiB)
    assert len(result.patterns) == 10
    # ten patterns written and checked once, the march checks three more times
    assert result.verified_bytes == 13 * 8 * MiB and result.verified_bytes_per_s > 0


PATTERNS = ["zeros", "ones", "checkerboard", "checkerboard-inverse", "walking-ones", "walking-zeros",
            "own-address", "own-address-inverse", "random", "random-inverse"]
RUNNERS = {"host": memtest_host.host_chunks, "device": memtest._device_chunks}


@pytest.fixture(params=sorted(RUNNERS))
def runner(request, monkeypatch):
    """Run the CPU memtest through either runner: host (the CPU's: chunks on threads, memcmp per tile)
    or device (the GPU's: XOR and min/max on the device, a ring of XORs in passes that rewrite)."""
    monkeypatch.setitem(memtest.RUNNERS, "cpu", RUNNERS[request.param])
    return request.param


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_corrupted_word_is_found_under_every_pattern(pattern, runner):
    inject = memtest.MemtestInjection(chunk=1, word=70_001, pattern=pattern)
    result = memtest.memtest("cpu", 8 * MiB, 4 * MiB, 256 * 1024, inject=inject)
    assert result.errors == 1
    [error] = result.first_errors
    assert (error.chunk, error.pattern, error.byte_offset) == (1, pattern, 70_001 * 8)
    assert error.expected ^ error.actual == 1 << 7
    assert result.verified_bytes == 13 * 8 * MiB


TILE_WORDS = 256 * 1024 // 8  # 16 tiles a chunk of 4 MiB: four windows of a GPU march


def _bad_write_in_chunk(monkeypatch, runner, tile, word, chunks):
    """One bit (40) left wrong when the march writes the inverse to ``tile`` of the second chunk."""
    def spoil(pattern, k, address, flat):
        if pattern.name == "checkerboard/inverted" and k == tile and address == chunks[1]:
            flat[word] ^= 1 << 40

    if runner == "host":
        write = memtest_host.HostTiles.write
        monkeypatch.setattr(memtest_host.HostTiles, "write", lambda self, pattern, k: (
            write(self, pattern, k), spoil(pattern, k, self.base, self.array.reshape(-1)))[0])
    else:
        write = memtest.write
        monkeypatch.setattr(memtest, "write", lambda tiles, pattern, order: (
            write(tiles, pattern, order), [spoil(pattern, k, tiles.data_ptr(), tiles.view(-1)) for k in order])[0])


@pytest.mark.parametrize("tile", [0, 6, 15])
def test_a_bad_write_in_the_march_is_found_where_it_is(monkeypatch, runner, tile):
    """Writing the inverse to one tile in the march's up pass leaves one bit wrong; the down pass
    finds it (on the GPU branch after the tile is overwritten, from the XOR kept in its ring slot)."""
    allocate, word, chunks = memtest._allocate, tile * TILE_WORDS + 1234, []

    def allocate_and_note(*args):
        made = allocate(*args)
        chunks.extend(c.data_ptr() for c in made)
        return made

    monkeypatch.setattr(memtest, "_allocate", allocate_and_note)
    _bad_write_in_chunk(monkeypatch, runner, tile, word, chunks)
    result = memtest.memtest("cpu", 8 * MiB, 4 * MiB, 256 * 1024)
    assert result.errors == 1
    [error] = result.first_errors
    assert (error.chunk, error.pattern, error.byte_offset) == (1, "checkerboard/inverted", word * 8)
    assert (error.expected, error.actual ^ error.expected) == (~0x5555555555555555, 1 << 40)
    assert result.verified_bytes == 13 * 8 * MiB


def test_every_chunk_follows_the_patterns_then_the_march_up_then_down_then_a_check():
    made = patterns.make_patterns(torch.device("cpu"), 64, 7)
    steps = patterns.passes(made, 9)
    assert [p.name for p in made] == PATTERNS  # zeros first: what the allocation wrote
    assert [(s.pattern.name, s.then_write.name, s.order, s.march) for s in steps[:10]] == [
        (p, (PATTERNS[1:] + ["checkerboard"])[i], range(9), False) for i, p in enumerate(PATTERNS)]
    inverse = "checkerboard/inverted"
    assert [(s.pattern.name, s.then_write and s.then_write.name, list(s.order), s.march) for s in steps[10:]] == [
        ("checkerboard", inverse, list(range(9)), True), (inverse, "checkerboard", list(range(8, -1, -1)), True),
        ("checkerboard", None, list(range(9)), True)]
    assert int(steps[11].pattern.template[0]) == ~0x5555555555555555


def _logged_pass(monkeypatch, runner, tiles, step, errors):
    """Run one pass with each runner's check and write logged: ("check" | "write", pattern, tile)."""
    log = []
    if runner == "host":
        differs, write = memtest_host.HostTiles.differs, memtest_host.HostTiles.write
        monkeypatch.setattr(memtest_host.HostTiles, "differs", lambda self, p, k: (
            log.append(("check", p.name, k)), differs(self, p, k))[1])
        monkeypatch.setattr(memtest_host.HostTiles, "write", lambda self, p, k: (
            log.append(("write", p.name, k)), write(self, p, k))[1])
        memtest_host.HostTiles(tiles.view(-1), tiles.shape[1], errors).check_then_write(step)
    else:
        expected, write = memtest.expected_tile, memtest.write
        monkeypatch.setattr(memtest, "expected_tile", lambda p, k, s: (log.append(("check", p.name, k)), expected(p, k, s))[1])
        monkeypatch.setattr(memtest, "write", lambda t, p, order: (
            [log.append(("write", p.name, k)) for k in order], write(t, p, order))[1])
        memtest._verify(tiles, step, torch.empty(tiles.shape[1], dtype=torch.int64), errors)
    return log


def test_each_runner_checks_each_tile_then_writes_it_in_the_pass_order(monkeypatch, runner):
    """The march's down pass on own-address (every tile differs): tile 8 checked then rewritten, then 7, ..."""
    own = patterns.make_patterns(torch.device("cpu"), 64, 7)[6]
    inverse = patterns.inverted(own)
    tiles = torch.zeros(9, 64, dtype=torch.int64)
    patterns.write(tiles, inverse, range(9))
    result = memtest.MemtestResult("cpu")
    log = _logged_pass(monkeypatch, runner, tiles, patterns.Pass(inverse, range(8, -1, -1), own, True),
                       memtest._Errors(result, 0, 8))
    assert log == [e for k in range(8, -1, -1) for e in (("check", inverse.name, k), ("write", own.name, k))]
    expected = torch.zeros_like(tiles)
    patterns.write(expected, own, range(9))
    assert (result.errors, result.verified_bytes) == (0, 9 * 64 * 8) and torch.equal(tiles, expected)


def test_chunks_on_threads_list_their_errors_in_chunk_order(monkeypatch):
    """Eight chunks on four threads; chunk 1 waits until chunk 6 has been spoilt (and is checked
    first), yet chunk 1's errors are listed first: the listing does not depend on thread timing."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    spoilt = threading.Event()

    class TwoFaults:
        def plant(self, chunk, index, step):
            if step.pattern.name == "random" and index == 6:
                chunk[3] ^= 1 << 9
                spoilt.set()
            if step.pattern.name == "zeros" and index == 1:
                assert spoilt.wait(timeout=60), "chunk 6 never ran beside chunk 1"
                chunk[(60 + 64) * 1] ^= 1 << 2

    result = memtest.memtest("cpu", 8 * 256 * 1024, 256 * 1024, 64 * 1024, inject=TwoFaults())
    assert result.errors == 2
    assert [(e.chunk, e.pattern, e.byte_offset, e.expected ^ e.actual) for e in result.first_errors] == [
        (1, "zeros", 124 * 8, 1 << 2), (6, "random", 3 * 8, 1 << 9)]
    assert result.verified_bytes == 13 * 8 * 256 * 1024


@pytest.mark.parametrize(("threads", "chunks"), [(1, 16), (2, 16), (3, 17), (96, 93)])
def test_cpu_chunks_are_sized_so_every_thread_has_one(monkeypatch, threads, chunks):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    size = memtest.chunk_bytes_for(1024 * MiB, 64 * MiB, MiB)
    assert size % MiB == 0 and 1024 * MiB // size == chunks and size <= 64 * MiB


def test_first_errors_are_capped(monkeypatch, runner):
    chunk = torch.zeros(4096, dtype=torch.int64)
    tiles = chunk.view(-1, 1024)
    zeros = patterns.make_patterns(torch.device("cpu"), 1024, 7)[0]
    chunk[100:140] = 5
    result = memtest.MemtestResult("cpu")
    _logged_pass(monkeypatch, runner, tiles, patterns.Pass(zeros, range(4), None, True), memtest._Errors(result, 0, 8))
    assert result.errors == 40 and len(result.first_errors) == 8
    assert [e.byte_offset for e in result.first_errors[:2]] == [800, 808]


def test_allocation_failure_is_reported_not_passed():
    with pytest.raises(memtest.MemtestAllocationError, match="could allocate only 0.00 of"):
        memtest.memtest("cpu", 2**60, 2**60, 2**20)


def test_copy_bandwidth_is_measured():
    assert memtest.copy_bytes_per_s("cpu", 4 * MiB, repeats=3) > 0


def test_vote_treats_identical_nans_as_equal():
    nan = float("nan")
    assert gemm.vote([t(nan, 1), t(nan, 1), t(nan, 2)]) == ([2], False)


def test_errors_are_listed_per_chunk():
    inject = memtest.MemtestInjection(chunk=0, word=9, pattern="zeros")
    first = memtest.memtest("cpu", 8 * MiB, 4 * MiB, 256 * 1024, inject=inject, max_errors_listed=1)
    assert [e.chunk for e in first.first_errors] == [0]


# --- the repeat check: any flipped bit in any one result, at any place, is caught and counted ---

from dhc.kernels import bitwise, repeat_check  # noqa: E402

CHECKERS = [repeat_check.HostCheck, repeat_check.DeviceCheck]


def _reference():
    return torch.randn(64, 48, generator=torch.Generator().manual_seed(3))


def _flip(tensor, word, bit):
    bad = tensor.clone()
    bitwise.words(bad)[word] ^= 1 << bit if bit < 63 else -(2**63)
    return bad


def _sum_preserving_pair(ref, bit=20):
    """Two flips a wrapping sum of the words cannot see: +2**bit in one word, -2**bit in another."""
    w = bitwise.words(ref)
    zero = int(((w >> bit) & 1).eq(0).nonzero()[0])
    one = int(((w >> bit) & 1).eq(1).nonzero()[0])
    bad = _flip(_flip(ref, zero, bit), one, bit)
    assert int(bitwise.words(bad).sum()) == int(w.sum()) and not torch.equal(bad, ref)
    return bad


def _drive(checker, results, window=4):
    check = checker(results[0], window)
    for i, result in enumerate(results):
        out = check.buffer(i)
        out.copy_(result)
        check.submit(out)
    check.drain()
    return check.mismatches()


@pytest.mark.parametrize("checker", CHECKERS)
@pytest.mark.parametrize(("fault", "words"), [
    (lambda r: _flip(r, 0, 0), 1),  # the first bit of the first byte
    (lambda r: _flip(r, bitwise.words(r).numel() - 1, 63), 1),  # the sign bit of the last word
    (lambda r: _flip(r, 700, 31), 1),  # a bit in the middle
    (_sum_preserving_pair, 2),  # cancels in a sum of the words: not in a bitwise compare
])
def test_the_repeat_check_catches_any_flip_in_one_result(checker, fault, words):
    ref = _reference()
    results = [ref, ref.clone(), fault(ref), ref.clone(), ref.clone(), ref.clone()]
    assert _drive(checker, results) == {2: words}


@pytest.mark.parametrize("checker", CHECKERS)
def test_the_repeat_check_counts_a_lasting_fault_every_time_across_windows(checker):
    ref = _reference()
    bad = _flip(ref, 9, 3)
    results = [ref] * 3 + [bad] * 7  # 10 results over windows of 4: the last window is partial
    assert _drive(checker, results) == {i: 1 for i in range(3, 10)}


@pytest.mark.parametrize("checker", CHECKERS)
def test_the_repeat_check_tells_negative_zero_from_zero_in_odd_sized_bf16(checker):
    ref = torch.zeros(3, 5, dtype=torch.bfloat16)  # 30 bytes: compared as 16-bit words
    negative = ref.clone()
    negative[2, 4] = -0.0
    assert _drive(checker, [ref, negative, ref.clone()]) == {1: 1}


@pytest.mark.parametrize("checker", CHECKERS)
def test_the_repeat_check_passes_identical_results(checker):
    ref = _reference()
    assert _drive(checker, [ref] + [ref.clone() for _ in range(9)]) == {}


def test_without_memcmp_the_compare_is_still_bitwise(monkeypatch):
    monkeypatch.setattr(bitwise, "MEMCMP", None)
    ref = _reference()
    assert _drive(repeat_check.HostCheck, [ref, _sum_preserving_pair(ref), ref.clone()]) == {1: 2}
    assert bitwise.differs(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert not bitwise.differs(torch.tensor([float("nan")]), torch.tensor([float("nan")]))


def test_the_device_check_path_catches_the_planted_faults(monkeypatch):
    """The GPU's compare path (two buffers, counts read back per window) run inline on the CPU."""
    monkeypatch.setitem(repeat_check.CHECKS, "cpu", repeat_check.DeviceCheck)
    inject = gemm.GemmInjection(flip_bit_worker=1, differ_worker=2, flip_at_iteration=9)
    result = gemm.burn(["cpu"] * 3, "fp32", 96, duration_s=0.3, inject=inject, min_iterations=12)
    flipped = result.workers[1]
    assert (flipped.mismatched_iterations, flipped.mismatched_words, flipped.first_mismatch_iteration) == (1, 1, 9)
    assert result.workers[0].mismatched_iterations == 0 and result.outvoted == [2]


# --- the README's time-to-a-verdict table stays equal to thresholds.yaml ---

def _readme_time_table():
    from pathlib import Path
    text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = text.split("### InstanceStress: what is checked, and how long it takes", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip().strip("*`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and all(c.endswith(" s") for c in cells[2:]):
            rows[cells[0]] = [float(c.removesuffix(" s")) for c in cells[2:]]
    return rows


def test_the_readme_time_table_matches_thresholds_yaml():
    from dhc import thresholds
    loaded = thresholds.load()
    rows = _readme_time_table()
    for suite in ("InstanceStress", "InstanceConnectivity"):
        checks = [c for c in thresholds.CATALOGUE if thresholds.suite_of(c) == suite]
        want = []
        for profile in ("quick", "full"):
            limits = loaded.resolve("ml.p5.48xlarge", profile)
            want += [[limits.timing(c).expected_s, limits.timing(c).timeout_s] for c in checks]
        for i, check in enumerate(checks):
            quick, full = want[i], want[i + len(checks)]
            assert rows[check] == quick + full, f"README row {check} vs thresholds.yaml"
        assert rows[suite] == [sum(rows[c][k] for c in checks) for k in range(4)], f"README total {suite}"


@pytest.mark.parametrize("pattern", ["own-address", "random-inverse", "walking-zeros"])
def test_a_corrupted_word_past_the_last_full_inline_block_of_a_tile_is_found(pattern):
    """Tiles of 20,032 words (not a power of two): a word near a tile's end is found under patterns
    whose expected tile is built per tile (template plus the tile's offset) and under a template."""
    word = 3 * 20_032 + 19_990
    inject = memtest.MemtestInjection(chunk=1, word=word, pattern=pattern)
    result = memtest.memtest("cpu", 4 * MiB, 2 * MiB, 20_032 * 8, inject=inject)
    assert result.errors == 1
    [error] = result.first_errors
    assert (error.chunk, error.pattern, error.byte_offset, error.expected ^ error.actual) == (1, pattern, word * 8, 1 << 7)


def test_memtest_without_libc_compares_and_copies_with_torch(monkeypatch, runner):
    monkeypatch.setattr(bitwise, "MEMCMP", None)
    monkeypatch.setattr(bitwise, "MEMCPY", None)
    assert memtest.memtest("cpu", 4 * MiB, 2 * MiB, 256 * 1024).errors == 0
    for pattern in PATTERNS:  # the host runner's numpy compare and copy, under every pattern
        inject = memtest.MemtestInjection(chunk=0, word=123, pattern=pattern)
        [error] = memtest.memtest("cpu", 4 * MiB, 2 * MiB, 256 * 1024, inject=inject).first_errors
        assert (error.pattern, error.byte_offset, error.expected ^ error.actual) == (pattern, 123 * 8, 1 << 7)


# --- the CUDA ordering of the GPU compare path and the burn's pacing, with fake streams and events ---

import functools  # noqa: E402
from contextlib import contextmanager  # noqa: E402


class FakeEvent:
    """As ``torch.cuda.Event``: ``record(stream)`` marks the work queued on it so far, ``synchronize()``
    waits for that work (here: lands the host copies it covers), ``elapsed_time`` in milliseconds."""

    def __init__(self, log, enable_timing=False):
        self.log, self.id, self.work = log, None, []

    def record(self, stream=None):
        self.id = len([e for e in self.log if e[0] == "record"]) + 1
        self.work = list(stream.pending)
        self.log.append(("record", stream.name, self.id))

    def synchronize(self):
        self.log.append(("event_sync", self.id))
        _land(self.work)

    def query(self):
        return True

    def elapsed_time(self, end):
        return 1.0


class FakeStream:
    """As ``torch.cuda.Stream``: work queued on it (host copies) lands only when something waits on
    the host for it; ``wait_stream``/``wait_event`` make this stream's later work wait for the other's."""

    def __init__(self, name, log):
        self.name, self.log, self.pending = name, log, []

    def record_event(self, event=None):
        event = event or FakeEvent(self.log)
        event.record(self)
        return event

    def wait_event(self, event):
        self.log.append(("wait_event", self.name, event.id))
        self.pending += event.work

    def wait_stream(self, stream):
        self.log.append(("wait_stream", self.name, stream.name))
        self.pending += stream.pending

    def synchronize(self):
        self.log.append(("synchronize", self.name))
        _land(self.pending)

    def query(self):
        return True


def _land(work):
    for host, value in work:
        host.copy_(value)


class FakeStreams:
    """``repeat_check.CudaStreams`` over fake streams; a copy to the host reads -1 until a sync lands it."""

    def __init__(self, log):
        self.log, self.main, self.side = log, FakeStream("main", log), FakeStream("side", log)
        self.current = self.main

    @contextmanager
    def use(self, stream):
        self.log.append(("enter", stream.name))
        before, self.current = self.current, stream
        try:
            yield
        finally:
            self.current = before
            self.log.append(("exit", stream.name))

    def to_host(self, tensor):
        host = torch.full_like(tensor, -1)
        self.current.pending.append((host, tensor.clone()))
        self.log.append(("to_host", self.current.name))
        return host


class LoggedCheck(repeat_check.DeviceCheck):
    def buffer(self, iteration):
        out = super().buffer(iteration)
        self.streams.log.append(("buffer", iteration))
        return out

    def submit(self, out):
        self.streams.log.append(("submit", self.submitted))
        super().submit(out)

    def drain(self):
        self.streams.log.append(("drain",))
        super().drain()

    def mismatches(self):
        self.streams.log.append(("mismatches",))
        return super().mismatches()


def _fake_cuda_burn(monkeypatch, iterations, flip_at):
    """A burn on the CPU whose check and clock talk to fake CUDA streams; the log of every call."""
    log = []
    streams = FakeStreams(log)
    monkeypatch.setitem(repeat_check.CHECKS, "cpu", functools.partial(LoggedCheck, streams=streams))
    monkeypatch.setattr(gemm, "_Clock", functools.partial(gemm._Clock, stream=streams.main,
                                                          timing_event=lambda: FakeEvent(log)))
    matmul, count = torch.matmul, torch.count_nonzero
    monkeypatch.setattr(torch, "matmul", lambda *a, **k: (log.append(("gemm", streams.current.name)), matmul(*a, **k))[1])
    monkeypatch.setattr(torch, "count_nonzero", lambda *a, **k: (log.append(("compare", streams.current.name)),
                                                                 count(*a, **k))[1])
    result = gemm.burn(["cpu"], "fp32", 32, duration_s=0, min_iterations=iterations,
                       inject=gemm.GemmInjection(flip_bit_worker=0, flip_at_iteration=flip_at))
    return result.workers[0], log


def _segment(log, start, stop):
    return log[log.index(start) + 1:log.index(stop)]


def test_a_buffer_is_written_again_only_after_the_main_stream_waits_for_its_compare(monkeypatch):
    iterations = 2 * gemm.SYNC_EVERY + 3
    worker, log = _fake_cuda_burn(monkeypatch, iterations, flip_at=9)
    assert (worker.iterations, worker.mismatched_iterations, worker.first_mismatch_iteration) == (iterations, 1, 9)
    markers = [("submit", i) for i in range(iterations)] + [("drain",)]
    compared = [[e[2] for e in _segment(log, markers[i], markers[i + 1]) if e[:2] == ("record", "side")]
                for i in range(iterations)]
    assert all(len(events) == 1 for events in compared)
    for i in range(iterations):
        before = log[log.index(("buffer", i)) - 1]
        if i >= 2:
            assert before == ("wait_event", "main", compared[i - 2][0]), f"buffer {i} handed out after {before}"
        else:
            assert before[0] != "wait_event"


def test_each_compare_runs_on_the_side_stream_after_it_waits_for_the_gemm(monkeypatch):
    iterations = 2 * gemm.SYNC_EVERY + 3
    _, log = _fake_cuda_burn(monkeypatch, iterations, flip_at=4)
    markers = [("submit", i) for i in range(iterations)] + [("drain",)]
    for i in range(iterations):
        segment = _segment(log, markers[i], markers[i + 1])
        flushed = [("to_host", "side")] if (i + 1) % gemm.SYNC_EVERY == 0 else []
        assert segment[:3] == [("wait_stream", "side", "main"), ("enter", "side"), ("compare", "side")], i
        assert segment[3:3 + len(flushed)] == flushed and segment[3 + len(flushed)][:2] == ("record", "side")
        assert segment[4 + len(flushed)] == ("exit", "side")
        assert ("gemm", "main") in log[log.index(markers[i]) - 3:log.index(markers[i])]  # this iteration's GEMM


def test_drain_flushes_the_partial_window_on_the_side_stream_then_the_main_stream_waits(monkeypatch):
    _, log = _fake_cuda_burn(monkeypatch, 2 * gemm.SYNC_EVERY + 3, flip_at=17)
    assert _segment(log, ("drain",), ("mismatches",))[:5] == [
        ("wait_stream", "side", "main"), ("enter", "side"), ("to_host", "side"), ("exit", "side"),
        ("wait_stream", "main", "side")]


def test_mismatches_synchronize_the_side_stream_before_reading_the_counts(monkeypatch):
    worker, log = _fake_cuda_burn(monkeypatch, 2 * gemm.SYNC_EVERY + 3, flip_at=17)
    assert log[log.index(("mismatches",)) + 1] == ("synchronize", "side")
    assert (worker.mismatched_iterations, worker.first_mismatch_iteration) == (1, 17)


@pytest.mark.parametrize("synchronize", [True, False])
def test_the_fake_copies_land_only_after_a_sync(monkeypatch, synchronize):
    """The fake can fail as the real thing would: counts read without a sync are not there yet."""
    if not synchronize:
        monkeypatch.setattr(FakeStream, "synchronize", lambda self: None)
    ref = _reference()
    results = [ref, ref.clone(), _flip(ref, 5, 5)] + [ref.clone()] * 3
    found = _drive(functools.partial(repeat_check.DeviceCheck, streams=FakeStreams([])), results)
    assert found == ({2: 1} if synchronize else {i: -1 for i in range(6)})


def test_the_host_paces_on_the_event_of_the_window_before(monkeypatch):
    iterations = 4 * gemm.SYNC_EVERY
    _, log = _fake_cuda_burn(monkeypatch, iterations, flip_at=1)
    [begin, *paces, end] = [e[2] for e in log if e[:2] == ("record", "main")]
    assert len(paces) == 4 and log.index(("record", "main", begin)) < log.index(("buffer", 0))
    for k, event in enumerate(paces):
        after = log[log.index(("record", "main", event)) + 1]
        if k:  # the host waits for the window before, never the one just queued
            assert after == ("event_sync", paces[k - 1]), (k, after)
        else:
            assert after[0] != "event_sync", after
        assert log.index(("record", "main", event)) > log.index(("submit", (k + 1) * gemm.SYNC_EVERY - 1))
    assert log[log.index(("record", "main", end)) + 1] == ("event_sync", end)
