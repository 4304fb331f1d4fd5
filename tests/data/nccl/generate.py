"""Write dhc's nccl-tests fixtures in each release's real printf layout: python3 generate.py tests/data/nccl

The formats are nccl-tests' own C format strings (src/common.cu, later src/util.cu, per release),
hence printf-style formatting here. The numbers come from a simple latency + bandwidth model.
"""
# ruff: noqa: UP031
import sys
from pathlib import Path

OUT = Path(sys.argv[1])

def fl(v, w):  # nccl-tests getFloatStr: shrink precision to fit, never truncate
    for fmt in ("%*.2f", "%*.1f", "%*.0f"):
        s = fmt % (w, v)
        if len(s) <= w:
            return s
    return ("%*.1e" if w >= 7 else "%*.0e") % (w, v)

def time_str(us):  # 2.13-2.16 style: %7.0f / %7.1f / %7.2f
    return "%7.0f" % us if us >= 10000 else ("%7.1f" % us if us >= 100 else "%7.2f" % us)

def model(size, ranks, peak_alg, lat_us):
    t = lat_us + size / (peak_alg * 1e3)  # us
    alg = size / t / 1e3
    return t, alg, alg * 2 * (ranks - 1) / ranks

def sizes(lo, hi):
    s = lo
    while s <= hi:
        yield s
        s *= 2

def rank_lines(hosts, gpus, style, gpu="NVIDIA H100 80GB HBM3"):
    out, r = [], 0
    for h in hosts:
        for d in range(gpus):
            if style == "v1":
                out.append("#   Rank %2d on %10s device %2d [0x%02x] %s" % (r, h, d, 16 + d, gpu))
            elif style == "v2":
                out.append("#   Rank %2d Pid %6d on %10s device %2d [0x%02x] %s" % (r, 4100 + r, h, d, 16 + d, gpu))
            else:
                out.append("#  Rank %2d Group %2d Pid %6d on %10s device %2d [%04x:%02x:%02x] %s" % (r, 0, 4100 + r, h, d, 0, 16 + d, 0, gpu))
            r += 1
    return out

def v213_header():
    return ["#",
            "# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place          " % ("", "", "", "", ""),
            "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s" % ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong"),
            "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s" % ("(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "")]

def v213_row(size, ranks, peak, lat, wrong=(0, 0), dtype="float", op="sum", word=4, override=None, check=True):
    t, a, b = model(size, ranks, peak, lat)
    t2, a2, b2 = model(size, ranks, peak * 1.002, lat * 0.98)
    cells = ["%7s" % time_str(t), "%6.2f" % a, "%6.2f" % b, ("%6g" % wrong[0]) if check else "   N/A",
             "%7s" % time_str(t2), "%6.2f" % a2, "%6.2f" % b2, ("%6g" % wrong[1]) if check else "   N/A"]
    if override:
        for i, v in override.items():
            cells[i] = v
    return "%12li  %12li  %8s  %6s  %6i" % (size, size // word, dtype, op, -1) + "".join("  " + c for c in cells)

def footer(avg, oob=0):
    return ["# Out of bounds values : %d %s" % (oob, "FAILED" if oob else "OK"), "# Avg bus bandwidth    : %g " % avg, "#"]

def nthread(lo, hi, gpus=1, new=True, hashash=True):
    tail = " agg iters: 1 validation: 1 graph: 0" if new else " validation: 1 "
    return ("# " if hashash else "") + "nThread 1 nGpus %d minBytes %d maxBytes %d step: 2(factor) warmup iters: 5 iters: 20%s" % (gpus, lo, hi, tail)

def table213(lo, hi, ranks, peak, lat, **kw):
    return [v213_row(s, ranks, peak, lat, **kw) for s in sizes(lo, hi)]

def write(name, lines, prefix=None):
    if prefix:
        lines = [prefix(i, text) for i, text in enumerate(lines)]
    (OUT / name).write_text("\n".join(lines) + "\n")

GiB = 2**30
P5 = ["ip-10-1-4-17", "ip-10-1-9-201"]
EFA_INFO = [
    "{h}:{p}:{p} [0] NCCL INFO Bootstrap : Using enp71s0:10.1.4.17<0>",
    "{h}:{p}:{t} [0] NCCL INFO NET/OFI Initializing aws-ofi-nccl 1.15.0",
    "{h}:{p}:{t} [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa-direct (found 32 nics)",
    "{h}:{p}:{t} [0] NCCL INFO Using network Libfabric",
    "{h}:{p}:{t} [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read",
    "{h}:{p}:{t} [0] NCCL INFO Channel 00/0 : 15[7] -> 0[0] [receive] via NET/Libfabric/0/GDRDMA",
    "{h}:{p}:{t} [0] NCCL INFO Channel 01/0 : 15[7] -> 0[0] [receive] via NET/Libfabric/1/GDRDMA/Shared",
]
def info(lines, host, pid=5101):
    return [text.format(h=host, p=pid, t=pid + 60) for text in lines]

# --- layouts across releases -------------------------------------------------------------------
# 1.x (2017-18): no "#" before nThread and the footer, bytes/N/op, time in ms, res = max error.
def v1_row(size, ranks, peak, lat):
    t, a, b = model(size, ranks, peak, lat)
    return "%12li  %12li  %6s  %6s" % (size, size // 4, "float", "sum") + "  %7.3f  %5.2f  %5.2f  %7.0le" % (t / 1e3, a, b, 0.0) + "  %7.3f  %5.2f  %5.2f  %7.0le" % (t / 1e3, a, b, 0.0)
write("ar_v1_2018_p4d_intra.log", [nthread(8, 4 * GiB, 8, new=False, hashash=False), "# Using devices"] + rank_lines(["ip-172-31-4-21"], 8, "v1", "A100-SXM4-40GB") + [
    "# %10s  %12s  %6s  %6s        out-of-place                    in-place" % ("", "", "", ""),
    "# %10s  %12s  %6s  %6s  %7s  %5s  %5s  %7s  %7s  %5s  %5s  %7s" % ("bytes", "N", "type", "op", "time", "algbw", "busbw", "res", "time", "algbw", "busbw", "res")]
    + [v1_row(s, 8, 132.0, 30) for s in sizes(8, 4 * GiB)] + [" Out of bounds values : 0 OK", " Avg bus bandwidth    : 61.2047 ", ""])

# 2.0-2.12 (2019-22): size/count/redop, no root, error = max error (%5.0le), "#" footer.
def v2_row(size, ranks, peak, lat, err="0e+00"):
    t, a, b = model(size, ranks, peak, lat)
    return "%12li  %12li  %8s  %6s" % (size, size // 4, "float", "sum") + ("  %7s  %6.2f  %6.2f  %5s" % (time_str(t), a, b, err)) * 2
v2_head = ["#",
           "# %10s  %12s  %8s  %6s            out-of-place                       in-place          " % ("", "", "", ""),
           "# %10s  %12s  %8s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s" % ("size", "count", "type", "redop", "time", "algbw", "busbw", "error", "time", "algbw", "busbw", "error"),
           "# %10s  %12s  %8s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s" % ("(B)", "(elements)", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "")]
v2_pre = [nthread(8, 4 * GiB, 8, new=False), "#", "# Using devices"] + rank_lines(["ip-172-31-4-21"], 8, "v2", "A100-SXM4-40GB")
v2_rows = [v2_row(s, 8, 134.0, 28) for s in sizes(8, 4 * GiB)]
write("ar_v2_10_p4d_intra.log", ["# NCCL 2.10.3 via nccl-tests 2.10.1"] + v2_pre + v2_head + v2_rows + footer(60.2) )
write("ar_v2_10_no_footer.log", v2_pre + v2_head + v2_rows)
write("ar_v2_10_out_of_bounds.log", v2_pre + v2_head + v2_rows[:-3] + [v2_row(s, 8, 134.0, 28, "3e-02") for s in sizes(GiB, 4 * GiB)] + footer(60.2, oob=3))

# 2.13+ plain: single p5 node, passes intra 460.
pre213 = [nthread(8, 8 * GiB, 8), "#", "# Using devices"] + rank_lines(["ip-10-1-4-17"], 8, "v3")
write("ar_v2_13_p5_intra.log", pre213 + v213_header() + table213(8, 8 * GiB, 8, 275.0, 22) + footer(120.3))

# 2.17.6+ with timestamps (-R style): trailing "YYYY-MM-DD HH:MM:SS" after the in-place group.
ts_head = ["#",
           "# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place          " % ("", "", "", "", ""),
           "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s" % ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong", 19, "timestamp"),
           "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s" % ("(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "", 19, "%Y-%m-%d %H:%M:%S")]
rows = [v213_row(s, 8, 275.0, 22) + "%21s" % ("2025-11-03 14:%02d:%02d" % (i // 60, i % 60)) for i, s in enumerate(sizes(8, 8 * GiB))]
write("ar_v2_17_timestamps_p5_intra.log", ["# nccl-tests version 2.17.6 nccl-headers=22703 nccl-library=22703", "# Collective test starting: all_reduce_perf"] + pre213 + ts_head + rows + footer(120.3) + ["# Collective test concluded: all_reduce_perf", "#"])

# 2.19.2+ per-iteration timing: i_min i_max i_p99 i_cv% after each #wrong.
pi_head = ["#",
           "# %10s  %12s  %8s  %6s  %6s              out-of-place (+ per-iteration)                                in-place (+ per-iteration)" % ("", "", "", "", ""),
           "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %7s  %7s  %7s  %7s  %6s  %6s  %6s  %7s  %7s  %7s  %7s " % ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "i_min", "i_max", "i_p99", "i_cv%", "time", "algbw", "busbw", "#wrong", "i_min", "i_max", "i_p99", "i_cv%"),
           "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %7s  %7s  %7s  %7s  %6s  %6s  %6s  %7s  %7s  %7s  %7s " % ("(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(us)", "(us)", "(%)", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(us)", "(us)", "(%)")]
def pi_row(size):
    t, a, b = model(size, 8, 275.0, 22)
    side = "  %7s  %6s  %6s  %6g  %7s  %7s  %7s  %7s" % (fl(t, 7), fl(a, 6), fl(b, 6), 0, fl(t * 0.97, 7), fl(t * 1.08, 7), fl(t * 1.07, 7), fl(2.4, 7))
    return "%12li  %12li  %8s  %6s  %6i" % (size, size // 4, "float", "sum", -1) + side + side
write("ar_v2_19_per_iteration_p5_intra.log", ["# nccl-tests version 2.19.6 nccl-headers=23001 nccl-library=23001", "# Collective test starting: all_reduce_perf",
      pre213[0] + " unalign: 0", "# Per-Iteration Report: CUDA event timing; i_* uses max over process rows ", "#", "# Using devices"] + rank_lines(["ip-10-1-4-17"], 8, "v3") + pi_head + [pi_row(s) for s in sizes(8, 8 * GiB)] + footer(120.3) + ["# Collective test concluded: all_reduce_perf", "#"])

# --- launcher prefixes, INFO lines, elision, wide numbers ---------------------------------------
pre2n = [nthread(8, 16 * GiB, 1), "#", "# Using devices"] + rank_lines(P5, 8, "v3")
sock = ["{h}:{p}:{p} [0] NCCL INFO NET/Plugin : dlerror=libnccl-net.so: cannot open shared object file: No such file or directory No plugin found (libnccl-net.so), using internal implementation",
        "{h}:{p}:{p} [0] NCCL INFO NET/IB : No device found.", "{h}:{p}:{p} [0] NCCL INFO NET/Socket : Using [0]enp71s0:10.1.4.17<0>",
        "{h}:{p}:{p} [0] NCCL INFO Using network Socket", "{h}:{p}:{t} [0] NCCL INFO Channel 00/0 : 15[7] -> 0[0] [receive] via NET/Socket/0",
        "{h}:{p}:{t} [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read"]
body = info(sock, P5[0]) + info(sock, P5[1], 6210) + pre2n + v213_header() + table213(8, 16 * GiB, 16, 24.0, 180) + footer(9.1)
write("ompi_tag_output_socket_fallback_p5.log", ["+ mpirun --tag-output -np 16 -N 8 /opt/nccl-tests/build/all_reduce_perf -b 8 -e 16G -f 2 -g 1"] + body,
      prefix=lambda i, line: line if i == 0 else ("[1,%d]<stdout>:" % (0 if "NCCL INFO" not in line or P5[0] in line else 8)) + line)

good = info(EFA_INFO, P5[0]) + info(EFA_INFO, P5[1], 6210)
tab = table213(8, 16 * GiB, 16, 259.9, 66)
write("srun_label_efa_p5_inter.log", good + pre2n + v213_header() + tab + footer(97.4),
      prefix=lambda i, line: ("%2d: " % (8 if P5[1] in line else 0)) + line)

inter = tab[:]
inter[20:20] = ["ip-10-1-9-201:6210:6290 [0] NCCL INFO comm 0x55d0c8 rank 8 nRanks 16 nNodes 2 localRanks 8 localRank 0 MNNVL 0",
                "ip-10-1-9-201:6210:6290 [0] NCCL INFO Channel 02/0 : 15[7] -> 0[0] [receive] via NET/Libfabric/2/GDRDMA/flush=None"]
write("interleaved_info_efa_p5_inter.log", good + pre2n + v213_header() + inter + footer(97.4))

el = tab[:6] + ["..."] + tab[20:]
write("elided_with_footer_p5_inter.log", good + pre2n + v213_header() + el + footer(97.4))
write("elided_without_footer_p5_inter.log", good + pre2n + v213_header() + el)

wide = pre2n[:1] + [nthread(8, 1024 * GiB, 1)] + pre2n[1:]
wtab = table213(GiB, 1024 * GiB, 16, 1150.0, 66)  # busbw > 999.99 overflows %6.2f; size > 12 digits
write("wide_numbers_p5_inter.log", ["# a synthetic NVLink-domain run: bandwidth and sizes wider than their columns"] + good + wide[1:] + v213_header() + wtab + footer(1980.6))

# --- runs that died -----------------------------------------------------------------------------
died = [nthread(8, 16 * GiB, 1), "#", "# Using devices"] + rank_lines(P5, 8, "v3") + [
    "ip-10-1-9-201:6210:6290 [0] transport/net.cc:1016 NCCL WARN NET/OFI Request 0x7f3c completed with error. RC: 12. Error: 12 (Cannot allocate memory).",
    "ip-10-1-9-201: Test NCCL failure common.cu:1279 'unhandled system error (run with NCCL_DEBUG=INFO for details) / NET/OFI Request completed with error'",
    " .. ip-10-1-9-201 pid 6210: Test failure common.cu:1191",
    "--------------------------------------------------------------------------",
    "mpirun noticed that process rank 8 with PID 6210 on node ip-10-1-9-201 exited on signal 6 (Aborted).",
    "--------------------------------------------------------------------------"]
write("died_before_table_p5.log", died)
write("died_mid_table_p5.log", pre2n + v213_header() + tab[:25] + [
    "ip-10-1-4-17: Test CUDA failure common.cu:893 'an illegal memory access was encountered'",
    " .. ip-10-1-4-17 pid 5101: Test failure common.cu:1191"])

# --- corrupt logs -------------------------------------------------------------------------------
t1 = table213(8, 16 * GiB, 16, 259.9, 66)
t1[22] = v213_row(8 * 2**22, 16, 259.9, 66, wrong=(128, 0))
write("repeated_tables_earlier_wrong_p5_inter.log", good + pre2n + v213_header() + t1 + footer(97.4, 1) + pre2n + v213_header() + tab + footer(97.4))
write("repeated_tables_earlier_slow_p5_inter.log", good + pre2n + v213_header() + table213(8, 16 * GiB, 16, 190.0, 66) + footer(70.1) + pre2n + v213_header() + tab + footer(97.4))
for name, cells in (("inf", {1: "   inf", 2: "   inf"}), ("1e309", {2: " 1e309"}), ("negative", {2: "-487.1", 6: "-487.3"})):
    bad = tab[:]
    bad[-2] = v213_row(8 * GiB, 16, 259.9, 66, override=cells)
    write(f"row_{name}_p5_inter.log", pre2n + v213_header() + bad + footer(97.4))
mal = tab[:]
mal[-4] = mal[-4].replace(mal[-4].split()[6], "4.8.7", 1)
write("malformed_number_p5_inter.log", pre2n + v213_header() + mal + footer(97.4))
write("truncated_sweep_p5_inter.log", pre2n + v213_header() + tab[:18])
write("truncated_mid_row_p5_inter.log", pre2n + v213_header() + tab[:30] + [tab[30][:40]])

# --- logs that cannot speak to all-reduce busbw -------------------------------------------------
def ag_row(size, ranks):  # all_gather: per-rank count, busbw = algbw (n-1)/n
    t, a, _ = model(size, ranks, 260.0, 60)
    b = a * (ranks - 1) / ranks
    return "%12li  %12li  %8s  %6s  %6i" % (size, size // 4 // ranks, "float", "none", -1) + ("  %7s  %6.2f  %6.2f  %6g" % (time_str(t), a, b, 0)) * 2
write("all_gather_perf_p5_inter.log", ["# nccl-tests version 2.17.6 nccl-headers=22703 nccl-library=22703", "# Collective test starting: all_gather_perf"] + pre2n + v213_header() + [ag_row(s, 16) for s in sizes(16 * 16, 16 * GiB)] + footer(90.0) + ["# Collective test concluded: all_gather_perf"])
def rs_row(size, ranks):  # reduce_scatter, 2.0-2.12 layout: redop sum, count per rank
    t, a, _ = model(size, ranks, 260.0, 60)
    b = a * (ranks - 1) / ranks
    return "%12li  %12li  %8s  %6s" % (size, size // 4 // ranks, "float", "sum") + ("  %7s  %6.2f  %6.2f  %5s" % (time_str(t), a, b, "0e+00")) * 2
write("reduce_scatter_perf_v2_10_p5_inter.log", [nthread(8, 16 * GiB, 1, new=False), "#", "# Using devices"] + rank_lines(P5, 8, "v2") + v2_head + [rs_row(s, 16) for s in sizes(64, 16 * GiB)] + footer(90.0))
def sr_row(size):  # sendrecv 2.13+: "sum" and root -1 like all-reduce, but busbw = algbw
    t, a, _ = model(size, 16, 48.0, 30)
    return "%12li  %12li  %8s  %6s  %6i" % (size, size // 4, "float", "sum", -1) + ("  %7s  %6.2f  %6.2f  %6g" % (time_str(t), a, a, 0)) * 2
write("sendrecv_perf_no_program_line_p5_inter.log", pre2n + v213_header() + [sr_row(s) for s in sizes(8, 16 * GiB)] + footer(20.0))
def one_rank_row(size):
    t, a, _ = model(size, 1, 900.0, 5)
    return "%12li  %12li  %8s  %6s  %6i" % (size, size // 4, "float", "sum", -1) + ("  %7s  %6.2f  %6.2f  %6g" % (time_str(t), a, 0.0, 0)) * 2
write("single_rank_p5.log", [nthread(8, 8 * GiB, 1), "#", "# Using devices"] + rank_lines(["ip-10-1-4-17"], 1, "v3") + v213_header() + [one_rank_row(s) for s in sizes(8, 8 * GiB)] + footer(0))
write("single_rank_no_rank_lines_p5.log", v213_header() + [one_rank_row(s) for s in sizes(8, 8 * GiB)])
write("small_sweep_p5_intra.log", [nthread(8, 128 * 2**20, 8), "#", "# Using devices"] + rank_lines(["ip-10-1-4-17"], 8, "v3") + v213_header() + table213(8, 128 * 2**20, 8, 275.0, 22) + footer(60.3))
write("blocking_p5_intra.log", [nthread(8, 8 * GiB, 8), "# Blocking Enabled: wait for completion and barrier after each collective ", "#", "# Using devices"] + rank_lines(["ip-10-1-4-17"], 8, "v3") + v213_header() + table213(8, 8 * GiB, 8, 275.0, 22) + footer(120.3))
write("op_max_p5_intra.log", pre213 + v213_header() + table213(8, 8 * GiB, 8, 275.0, 22, op="max") + footer(120.3))
write("validation_off_p5_intra.log", pre213 + v213_header() + table213(8, 8 * GiB, 8, 275.0, 22, check=False) + footer(120.3))
write("two_type_sweep_p5_intra.log", pre213 + v213_header() + table213(8, 8 * GiB, 8, 275.0, 22) + table213(8, 8 * GiB, 8, 276.0, 22, dtype="bfloat16", word=2) + footer(120.3))

# --- scope --------------------------------------------------------------------------------------
write("two_node_4gpu_no_hosts_p5.log", ["# 2 x 4 GPUs, ranks not listed (a table pasted without its header)"] + v213_header() + table213(8, 16 * GiB, 8, 200.0, 50))
write("efa_without_channels_p5_inter.log", info(EFA_INFO[:4], P5[0]) + pre2n + v213_header() + tab + footer(97.4))
write("efa_old_plugin_p4de_inter.log", info(["{h}:{p}:{p} [0] NCCL INFO NET/OFI Selected Provider is efa (found 4 nics)", "{h}:{p}:{p} [0] NCCL INFO Using network AWS Libfabric",
      "{h}:{p}:{t} [0] NCCL INFO Channel 00/0 : 15[7] -> 0[0] [receive] via NET/AWS Libfabric/0/GDRDMA",
      "{h}:{p}:{t} [0] NCCL INFO Channel 01/1 : 15[7] -> 0[0] [receive] via NET/AWS Libfabric/1(2)/GDRDMA/Shared"], "ip-172-31-4-21")
      + [nthread(8, 16 * GiB, 1), "#", "# Using devices"] + rank_lines(["ip-172-31-4-21", "ip-172-31-9-88"], 8, "v3", "NVIDIA A100-SXM4-80GB") + v213_header() + table213(8, 16 * GiB, 16, 42.0, 60) + footer(17.0))

# nccl-tests built without MPI=1 but started by mpirun -np 2: each process runs its own one-rank test
# and both print their preamble, so two "Rank  0" lines on two hosts (as in nccl-tests issue #107).
def solo_v2_row(size):
    t, a, _ = model(size, 1, 700.0, 8)
    return "%12li  %12li  %8s  %6s" % (size, size // 4, "float", "sum") + ("  %7s  %6.2f  %6.2f  %5s" % (time_str(t), a, 0.0, "0e+00")) * 2
solo = []
for _host in P5:
    solo += [nthread(8, 4 * GiB, 1, new=False), "#", "# Using devices"]
solo += ["#   Rank  0 Pid   4100 on %10s device  0 [0x10] NVIDIA A100-SXM4-40GB" % P5[1],
         "#   Rank  0 Pid   5200 on %10s device  0 [0x10] NVIDIA A100-SXM4-40GB" % P5[0]]
solo += v2_head + v2_head + [solo_v2_row(s) for s in sizes(8, 4 * GiB)] + [solo_v2_row(s) for s in sizes(8, 4 * GiB)] + footer(0) + footer(0)
write("built_without_mpi_two_processes_p4d.log", ["$ mpirun -host %s,%s -np 2 ./build/all_reduce_perf -b 8 -e 4G -g 1" % tuple(P5)] + solo)
