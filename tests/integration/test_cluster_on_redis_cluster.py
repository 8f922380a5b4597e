"""The cluster on a real Redis Cluster (three masters, redis-server --cluster-enabled): the
three-node tests of test_cluster.py run again with `cluster.redis_cluster` in place of one
Redis (the same test functions, with this module's `nodes`), then what is the Redis Cluster's
own: every key and channel in the one slot of the hash tag {wsagent}, sharded pub/sub
(SPUBLISH, never a PUBLISH broadcast to every shard), QoS 1 through the inboxes, and a
failover of the slot's master under QoS 1 load that loses nothing acknowledged."""

import asyncio
import json
import subprocess
import time

import pytest

from conftest import BIN, client, close_all, publish, recv_type, run, subscribe
from redis_procs import RedisCluster
from test_cluster import FAST, qos1_through_a_failover, wait_filters
# The three-node tests, collected here again: they run with this module's `nodes`.
from test_cluster import (  # noqa: F401
    test_a_client_id_taken_on_another_node_closes_the_old_connection,
    test_a_direct_message_reaches_its_recipient_on_another_node,
    test_a_killed_node_is_dropped_and_a_stopped_one_leaves_at_once,
    test_a_node_that_leaves_asks_its_clients_to_reconnect_elsewhere,
    test_a_shared_subscription_picks_one_member_across_the_cluster,
    test_a_survivor_publishes_the_wills_and_presence_of_a_dead_nodes_clients_once,
    test_an_mqtt_client_takes_its_id_over_from_a_native_one_on_another_node,
    test_native_and_mqtt_clients_on_different_nodes, test_presence_events_are_cluster_wide,
    test_route_table_follows_unsubscribe_and_disconnect,
    test_wildcard_fan_out_across_nodes_without_gap_or_duplicate)

SLOT_KEY = "{wsagent}:nodes"


@pytest.fixture
def rcluster(tmp_path):
    c = RedisCluster(tmp_path / "rc")
    yield c
    c.stop()


def join(agent_factory, seeds, name, extra=()):
    a = agent_factory(name=name, args=["--store.kind", "memory", "--cluster.redis_cluster",
                                       seeds, "--cluster.node_id", name, *FAST, *extra])
    a.wait_log(rf"cluster: node {name} joined")
    return a


@pytest.fixture
def nodes(agent_factory, rcluster):
    """make(n): n agents on the Redis Cluster, named n0, n1...; each waits until it joined."""
    def make(n, extra=()):
        out = [join(agent_factory, rcluster.seeds, f"n{i}", extra) for i in range(n)]
        for a in out:
            a.wait_metric("wsagent_cluster_nodes", lambda v: v == n - 1)
        return out
    return make


def test_every_key_is_in_one_slot_and_node_channels_are_sharded(nodes, rcluster):
    a, b = nodes(2)
    owner = rcluster.owner(SLOT_KEY)
    owner.cli("CONFIG", "RESETSTAT")

    async def go():
        s = await client(b, "far")
        await subscribe(s, "x/#")
        wait_filters(a, 1)
        pub = await client(a, "near")
        for i in range(20):
            await publish(pub, "x/y", i)
        for i in range(20):
            assert (await recv_type(s, "message"))["payload"] == i
        await close_all()
    run(go())
    assert a.log().count("Redis Cluster through") == 1
    # The keys are all on the slot's owner, under the hash tag.
    keys = owner.cli("KEYS", "*").split()
    assert "{wsagent}:nodes" in keys and "{wsagent}:record:n0" in keys, keys
    assert all(k.startswith("{wsagent}:") for k in keys), keys
    for n in rcluster.nodes:
        if n is not owner:
            assert n.cli("DBSIZE") == "0"
    assert owner.command_calls("spublish") >= 20
    for n in rcluster.nodes:  # a PUBLISH would go to every shard over the cluster bus
        assert n.command_calls("publish") == 0


def test_qos1_across_nodes_through_the_inbox_on_the_slots_shard(nodes, rcluster):
    a, b = nodes(2)

    async def go():
        s = await client(b, "q-sub")
        await subscribe(s, "q/#", qos=1)
        wait_filters(a, 1)
        pub = await client(a, "q-pub")
        for i in range(20):
            await publish(pub, "q/x", i, qos=1, msgid=f"m{i}")
            assert (await recv_type(pub, "ack"))["msgid"] == f"m{i}"
        for i in range(20):
            m = await recv_type(s, "message")
            assert m["payload"] == i
            await s.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        await close_all()
    run(go())
    assert b.metric("wsagent_cluster_inbox_received_total") == 20
    assert rcluster.owner(SLOT_KEY).cli("EXISTS", "{wsagent}:inbox:n1") == "1"


def test_retained_messages_reach_a_node_that_joins_later(nodes, agent_factory, rcluster):
    a, b = nodes(2)

    async def go():
        pub = await client(a, "r-pub")
        await publish(pub, "plant/l1/temp", 21.5, retain=True, qos=1, msgid="r1")
        assert (await recv_type(pub, "ack"))["msgid"] == "r1"
        late = join(agent_factory, rcluster.seeds, "late")
        late.wait_metric("wsagent_cluster_nodes", lambda v: v == 2)
        s = await client(late, "r-sub")
        await subscribe(s, "plant/#")
        m = await recv_type(s, "message")
        assert m["payload"] == 21.5 and m["retained"] is True
        await close_all()
    run(go())


def test_a_failover_of_the_slots_master_under_qos1_load_loses_nothing_acknowledged(
        agent_factory, tmp_path):
    """Three masters with a replica each. The master serving {wsagent} is killed under QoS 1
    load: the Redis Cluster promotes its replica, the agents find it through the slot map and
    go on; every publish is acknowledged (held meanwhile) and reaches both subscribers."""
    rc = RedisCluster(tmp_path / "rc", masters=3, replicas=1)
    try:
        args = ["--cluster.publish_timeout_ms", "30000", "--cluster.node_timeout_ms", "8000"]
        a, b, c = (join(agent_factory, rc.seeds, f"f{i}", args) for i in range(3))
        for x in (a, b, c):
            x.wait_metric("wsagent_cluster_nodes", lambda v: v == 2)
        old = rc.owner(SLOT_KEY)

        async def recovered():
            deadline = time.monotonic() + 20
            while (new := rc.owner(SLOT_KEY)) is None or new is old:
                assert time.monotonic() < deadline, "no failover"
                await asyncio.sleep(0.2)
            return new.port

        async def go():
            await qos1_through_a_failover(a, b, c, old.kill, recovered)
        run(go())
    finally:
        rc.stop()


def test_a_redis_cluster_with_another_way_to_redis_is_a_configuration_error():
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--cluster.redis",
                        "redis://127.0.0.1:1", "--cluster.redis_cluster", "127.0.0.1:2"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "cluster.redis_cluster" in r.stderr + r.stdout
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--cluster.redis_cluster",
                        "127.0.0.1"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "host:port" in r.stderr + r.stdout
