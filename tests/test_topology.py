"""Connectivity groups from candidates (dhc.controller.topology): bounded, by topology, by kind, leftovers."""

from __future__ import annotations

import pytest

from dhc.controller.topology import LAYERS, Candidate, Grouping, balanced, form, path, places

P5 = ("p5.48xlarge", "quick")
WINDOW = 60.0


def node(name: str, since: float = 0.0, kind: tuple[str, str] = P5, l1: str = "", l2: str = "", l3: str = "",
         l4: str = "", **labels: str) -> Candidate:
    topo = {key: value for key, value in zip(LAYERS, (l1, l2, l3, l4), strict=True) if value}
    return Candidate(name, kind, topo | labels, since)


def sizes(groups: list[list[str]]) -> list[int]:
    return sorted((len(g) for g in groups), reverse=True)


def test_forty_nodes_under_one_switch_split_into_balanced_bounded_groups() -> None:
    nodes = [node(f"n{i:02}", l1="nn-a", l2="nn-b", l3="nn-c") for i in range(40)]
    groups = form(nodes, Grouping(size=16), WINDOW, now=WINDOW)
    assert sizes(groups) == [14, 13, 13]
    assert sorted(n for g in groups for n in g) == sorted(c.name for c in nodes)  # each node in one group


def test_a_full_domain_forms_at_once_and_a_partial_one_waits_for_the_window() -> None:
    full = [node(f"a{i:02}", since=10.0, l2="nn-a", l3="sw-a") for i in range(16)]
    partial = [node(f"b{i}", since=10.0, l2="nn-b", l3="sw-b") for i in range(5)]
    groups = form(full + partial, Grouping(size=16), WINDOW, now=11.0)
    assert groups == [sorted(c.name for c in full)]
    later = form(partial, Grouping(size=16), WINDOW, now=10.0 + WINDOW)
    assert later == [sorted(c.name for c in partial)]


def test_sixteen_nodes_under_one_layer2_over_four_leaves_make_one_group_spanning_them() -> None:
    nodes = [node(f"n{i:02}", l1="nn-1", l2="nn-2", l3=f"leaf-{i % 4}") for i in range(16)]
    groups = form(nodes, Grouping(size=16), WINDOW, now=WINDOW)
    assert groups == [sorted(c.name for c in nodes)]  # not four groups of 4, one under each leaf


def test_groups_of_a_layer2_domain_each_cross_its_leaves() -> None:
    nodes = [node(f"n{i:02}", l1="nn-1", l2="nn-2", l3=f"leaf-{i // 10}") for i in range(40)]  # 4 leaves of 10
    by_name = {c.name: c for c in nodes}
    groups = form(nodes, Grouping(size=16), WINDOW, now=WINDOW)
    assert sizes(groups) == [14, 13, 13]
    for g in groups:  # each holds 3 or 4 of every leaf: its all-reduce crosses the spine
        leaves = [by_name[n].labels[LAYERS[2]] for n in g]
        assert {leaves.count(leaf) for leaf in set(leaves)} <= {3, 4} and len(set(leaves)) == 4


def test_a_small_leaf_is_dealt_so_every_group_crosses_the_spine() -> None:
    big = [node(f"b{i:02}", l2="nn-2", l3="leaf-big") for i in range(30)]
    small = [node(f"s{i}", l2="nn-2", l3="leaf-small") for i in range(3)]
    groups = form(big + small, Grouping(size=16), WINDOW, now=WINDOW)
    assert sizes(groups) == [11, 11, 11]
    assert all(sum(n.startswith("s") for n in g) == 1 for g in groups)


def test_two_layer2_domains_are_never_mixed() -> None:
    one = [node(f"x{i}", l1="nn-1", l2="nn-2", l3=f"sw-x{i % 2}") for i in range(5)]
    two = [node(f"y{i}", l1="nn-1", l2="nn-3", l3="sw-y") for i in range(3)]
    groups = form(one + two, Grouping(size=16), WINDOW, now=WINDOW)
    assert sorted(groups) == [sorted(c.name for c in one), sorted(c.name for c in two)]
    full = [node(f"z{i:02}", l1="nn-1", l2=f"nn-{i % 2}", l3=f"sw-{i % 4}") for i in range(32)]  # 16 + 16
    for g in form(full, Grouping(size=16), WINDOW, now=WINDOW):
        assert len({c.labels[LAYERS[1]] for c in full if c.name in g}) == 1 and len(g) == 16


def test_before_the_window_a_domain_forms_only_full_groups_and_the_newest_wait_for_peers() -> None:
    nodes = [node(f"n{i:02}", since=float(i), l2="nn-2", l3=f"leaf-{i % 4}") for i in range(20)]
    early = form(nodes, Grouping(size=16), WINDOW, now=30.0)
    assert early == [sorted(c.name for c in nodes[:16])]  # one full group spanning the leaves, not 10/10
    assert form(nodes[16:], Grouping(size=16), WINDOW, now=16.0 + WINDOW) == [["n16", "n17", "n18", "n19"]]


def test_a_seventeenth_node_waits_then_joins_the_next_group_of_its_type() -> None:
    first = [node(f"a{i:02}", since=0.0, l2="nn-2", l3="sw-a") for i in range(16)]
    late = node("a16", since=5.0, l2="nn-2", l3="sw-a")
    assert form(first, Grouping(size=16), WINDOW, now=1.0) == [sorted(c.name for c in first)]  # full: at once
    grouping = Grouping(size=16, alone_after_s=600.0)
    assert form([late], grouping, WINDOW, now=5.0 + WINDOW) == []  # no peer yet, not alone long enough: waits
    neighbours = [node(f"b{i}", since=100.0, l2="nn-2", l3="sw-b") for i in range(3)]
    groups = form([late] + neighbours, grouping, WINDOW, now=100.0 + WINDOW)
    assert groups == [["a16", "b0", "b1", "b2"]]  # joined the group forming next under its layer-2 node


def test_a_stray_joins_the_nearest_group_in_the_topology() -> None:
    near = [node(f"n{i}", l1="nn-1", l2="nn-2", l3="sw-n") for i in range(3)]
    far = [node(f"f{i}", l1="nn-9", l2="nn-8", l3="sw-f") for i in range(3)]
    stray = node("s", l1="nn-1", l2="nn-3", l3="sw-s")  # alone under its layer-2 node; shares layer-1 with near
    groups = form(near + far + [stray], Grouping(size=16), WINDOW, now=WINDOW)
    assert sorted(groups) == [["f0", "f1", "f2"], ["n0", "n1", "n2", "s"]]


def test_a_lone_node_runs_alone_only_after_the_longer_wait() -> None:
    grouping = Grouping(size=16, alone_after_s=300.0)
    lone = node("only", since=0.0, l3="sw-a")
    assert form([lone], Grouping(), WINDOW, now=5 * WINDOW - 1) == [] and \
        form([lone], Grouping(), WINDOW, now=5 * WINDOW) == [["only"]]  # unset: five windows
    assert form([lone], grouping, WINDOW, now=WINDOW) == []
    assert form([lone], grouping, WINDOW, now=299.0) == []
    assert form([lone], grouping, WINDOW, now=300.0) == [["only"]]  # one node: the intra-node stage


def test_strays_of_several_switches_pool_once_they_reach_the_minimum() -> None:
    strays = [node("a", l2="nn-a", l3="sw-a"), node("b", l2="nn-b", l3="sw-b")]  # one under each layer-2 node
    assert form(strays, Grouping(size=16, min_size=2), WINDOW, now=WINDOW) == [["a", "b"]]


def test_nodes_without_topology_labels_group_by_type_alone() -> None:
    nodes = [node(f"n{i:02}") for i in range(20)]
    assert sizes(form(nodes, Grouping(size=16), WINDOW, now=WINDOW)) == [10, 10]


def test_mixed_instance_types_and_profiles_never_share_a_group() -> None:
    p5 = [node(f"p{i}", l3="sw-a") for i in range(3)]
    p4 = [node(f"q{i}", kind=("p4d.24xlarge", "quick"), l3="sw-a") for i in range(3)]
    full = [node(f"r{i}", kind=("p5.48xlarge", "full"), l3="sw-a") for i in range(3)]
    stray = node("lone-p4", kind=("p4d.24xlarge", "quick"), l3="sw-z")
    groups = form(p5 + p4 + full + [stray], Grouping(size=16), WINDOW, now=WINDOW)
    assert sorted(groups) == [["lone-p4", "q0", "q1", "q2"], ["p0", "p1", "p2"], ["r0", "r1", "r2"]]


def test_a_user_named_label_replaces_the_eks_layers_as_a_single_level() -> None:
    label = "example.com/placement-group"
    nodes = [node(f"a{i}", l2="nn-1", l3=f"sw-{i}", **{label: "pg-a"}) for i in range(3)] + \
            [node(f"b{i}", l2="nn-1", l3=f"sw-{i}", **{label: "pg-b"}) for i in range(3)]
    groups = form(nodes, Grouping(size=16, label=label), WINDOW, now=WINDOW)
    assert sorted(groups) == [["a0", "a1", "a2"], ["b0", "b1", "b2"]]  # by placement group, not by the EKS layers
    many = [node(f"p{i:02}", l3=f"sw-{i % 4}", **{label: "pg-a"}) for i in range(20)]
    assert sizes(form(many, Grouping(size=16, label=label), WINDOW, now=WINDOW)) == [10, 10]


def test_a_four_layer_topology_groups_under_layer3_across_its_layer4_leaves() -> None:
    """On types whose topology has four layers, layer-4 is the leaf and layer-3 the spine above it:
    two layer-3 domains under one layer-2 never share a group, and each group crosses its leaves."""
    nodes = [node(f"{d}{i:02}", l1="nn-1", l2="nn-2", l3=f"nn-3{d}", l4=f"leaf-{d}{i % 4}")
             for d in "ab" for i in range(16)]
    groups = form(nodes, Grouping(size=16), WINDOW, now=WINDOW)
    assert sorted(groups) == [[f"a{i:02}" for i in range(16)], [f"b{i:02}" for i in range(16)]]
    assert path(nodes[0].labels) == ("nn-1", "nn-2", "nn-3a", "leaf-a0")
    unlabelled_leaf = [node(f"x{d}", l1="nn-1", l2="nn-2", l3=f"nn-3{d}") for d in "ab"]  # no layer-4 label
    assert sorted(form(nodes[:3] + nodes[16:19] + unlabelled_leaf, Grouping(size=16), WINDOW, now=WINDOW)) == [
        ["a00", "a01", "a02", "xa"], ["b00", "b01", "b02", "xb"]]  # each stays under its own layer-3 node
    three = [node(f"c{i:02}", l1="nn-1", l2="nn-2", l3=f"leaf-{i % 4}") for i in range(16)]
    assert form(three, Grouping(size=16), WINDOW, now=WINDOW) == [sorted(c.name for c in three)]  # three: as before


def test_topology_path_reads_coarse_to_fine_and_ignores_missing_inner_layers() -> None:
    assert path({LAYERS[0]: "a", LAYERS[1]: "b", LAYERS[2]: "c", LAYERS[3]: "d"}) == ("a", "b", "c", "d")
    assert path({LAYERS[0]: "a", LAYERS[1]: "b", LAYERS[2]: "c"}) == ("a", "b", "c")
    assert path({LAYERS[0]: "a", LAYERS[1]: "b"}) == ("a", "b")
    assert path({}) == ()
    assert path({"pg": ""}, "pg") == ()


def test_a_groups_places_name_each_switch_once_and_unlabelled_nodes_as_such() -> None:
    assert places([("a", "b", "c"), ("a", "b", "c"), ("a", "b", "d")]) == "a/b/c,a/b/d"
    assert places([(), ("pg-1",)]) == "pg-1,unlabelled"


def test_balanced_sizes_differ_by_one_at_most() -> None:
    for n in range(1, 70):
        groups = balanced(list(range(n)), 16)
        assert max(map(len, groups)) <= 16 and max(map(len, groups)) - min(map(len, groups)) <= 1
        assert sum(groups, []) == list(range(n))


@pytest.mark.parametrize("size,minimum,alone", [(0, 1, 1.0), (4, 5, 1.0), (4, 0, 1.0), (4, 2, -1.0)])
def test_impossible_group_settings_are_refused_with_what_was_expected(size: int, minimum: int, alone: float) -> None:
    with pytest.raises(ValueError, match="expected"):
        Grouping(size=size, min_size=minimum, alone_after_s=alone)
