"""The ec2 actuator against moto in server mode, over real HTTP: reboot and terminate, errors named.

moto checks the ids it is given as EC2 does (``InvalidInstanceID.NotFound`` for one it does not
know) and moves terminated instances to ``shutting-down`` / ``terminated``.
"""

import pytest

moto_server = pytest.importorskip("moto.server", reason="the EC2 tests need moto[server]")

import boto3  # noqa: E402

from dhc.aws.actuators import ActuatorError, Ec2  # noqa: E402


@pytest.fixture
def ec2(monkeypatch):
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-west-2")):
        monkeypatch.setenv(key, value)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        client = boto3.session.Session().client("ec2", region_name="us-west-2", endpoint_url=url)
        image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ids = [i["InstanceId"] for i in client.run_instances(ImageId=image, MinCount=2, MaxCount=2)["Instances"]]
        yield url, client, ids
    finally:
        server.stop()


def states(client, ids):
    answer = client.describe_instances(InstanceIds=ids)
    return {i["InstanceId"]: i["State"]["Name"] for r in answer["Reservations"] for i in r["Instances"]}


def test_terminate_replaces_through_the_auto_scaling_group(ec2):
    url, client, ids = ec2
    actuator = Ec2("us-west-2", url, attempts=2, timeout_s=10)
    assert actuator.act("Replace", [ids[0]]) == {ids[0]: ""}
    assert states(client, ids)[ids[0]] in ("shutting-down", "terminated")
    assert states(client, ids)[ids[1]] == "running"


def test_reboot_is_accepted_and_leaves_the_instance_running(ec2):
    url, client, ids = ec2
    assert Ec2("us-west-2", url, attempts=2, timeout_s=10).act("Reboot", [ids[1]]) == {ids[1]: ""}
    assert states(client, ids)[ids[1]] == "running"


def test_an_unknown_instance_is_an_error_naming_the_call_and_the_code(ec2):
    url, _, _ = ec2
    with pytest.raises(ActuatorError, match=r"EC2 RebootInstances i-0123456789abcdef0: InvalidInstanceID.NotFound"):
        Ec2("us-west-2", url, attempts=2, timeout_s=10).act("Reboot", ["i-0123456789abcdef0"])
