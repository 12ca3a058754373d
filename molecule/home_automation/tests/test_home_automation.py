"""The home automation layer on a container: broker users and ACLs, unit hardening, the bridge's discovery and the
vision-notifier's synthetic notification when no router answers (testinfra)."""
import json
import uuid

HA = "-u homeassistant -P mol-ha-password-1"


def test_services_running(host):
    for unit in ("mosquitto", "homelab-ha-bridge", "homelab-vision-notifier"):
        assert host.service(unit).is_running, unit
        assert host.service(unit).is_enabled, unit


def test_password_file_is_hashed_and_private(host):
    f = host.file("/etc/mosquitto/homelab.passwd")
    assert f.mode == 0o640 and f.user == "root" and f.group == "mosquitto"
    lines = f.content_string.strip().splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["frigate", "ha_bridge", "homeassistant",
                                                            "vision_notifier"]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in lines)
    assert "mol-ha-password-1" not in f.content_string
    assert host.file("/etc/homelab-ha/bridge.env").mode == 0o600


def test_anonymous_and_wrong_password_refused(host):
    assert host.run("mosquitto_pub -h 127.0.0.1 -t x -m y -q 1").rc != 0
    assert host.run("mosquitto_pub -h 127.0.0.1 -u homeassistant -P wrong -t x -m y -q 1").rc != 0


def test_listener_is_loopback_only_without_a_lan_address(host):
    conf = host.file("/etc/mosquitto/conf.d/homelab.conf").content_string
    assert [line for line in conf.splitlines() if line.startswith("listener")] == ["listener 1883 127.0.0.1"]
    probe = ("import socket,sys\nip=sys.argv[1]\ntry:\n socket.create_connection((ip,1883),2)\n print('open')\n"
             "except OSError:\n print('closed')")
    ip = host.check_output("hostname -I").split()[0]
    assert host.check_output(f"python3 -c \"{probe}\" {ip}") == "closed"
    assert host.check_output(f"python3 -c \"{probe}\" 127.0.0.1") == "open"


def test_bridge_discovery_and_state(host):
    out = host.check_output(f"mosquitto_sub -h 127.0.0.1 {HA} -t homeassistant/device/homelab_mol_spark/config "
                            "-C 1 -W 20")
    d = json.loads(out)
    keys = {k[len("homelab_mol_spark_"):] for k in d["cmps"]}
    assert "ram_pct" in keys and "gpu0_util" in keys and "gpu0_mem" not in keys
    state = json.loads(host.check_output(f"mosquitto_sub -h 127.0.0.1 {HA} -t homelab/netdata/mol-gw/state "
                                         "-C 1 -W 20"))
    assert state["cpu"] == 12.5


def test_camera_event_without_router_still_notifies(host):
    host.run("rm -f /tmp/text.json")
    sub = f"timeout 40 mosquitto_sub -h 127.0.0.1 {HA} -t homelab/vision/notify/text -C 1 -W 35 > /tmp/text.json &"
    host.run(sub)
    host.run("sleep 1")
    eid = f"mol-{uuid.uuid4().hex[:10]}"
    event = json.dumps({"type": "new", "before": {}, "after": {"id": eid, "camera": f"cam{eid[4:]}",
                                                               "label": "person", "start_time": 1.0}})
    host.run_expect([0], f"mosquitto_pub -h 127.0.0.1 -u frigate -P mol-frigate-password-4 -q 1 "
                         f"-t frigate/events -m '{event}'")
    host.run("for i in $(seq 1 40); do [ -s /tmp/text.json ] && break; sleep 1; done")
    note = json.loads(host.file("/tmp/text.json").content_string)
    assert note["id"] == eid and note["degraded"] is True
    log = host.file("/var/log/homelab-vision/vision-decisions.jsonl").content_string
    assert '"kind": "notified"' in log


def test_units_are_hardened(host):
    for unit in ("homelab-ha-bridge", "homelab-vision-notifier"):
        props = host.check_output(f"systemctl show {unit} -p NoNewPrivileges -p ProtectSystem -p User")
        assert "NoNewPrivileges=yes" in props and "ProtectSystem=strict" in props and "User=homelab-ha" in props
    props = host.check_output("systemctl show mosquitto -p ProtectSystem -p NoNewPrivileges")
    assert "ProtectSystem=strict" in props and "NoNewPrivileges=yes" in props


def test_broker_reloads_under_the_hardened_unit(host):
    assert host.run("systemctl reload mosquitto").rc == 0
    assert host.service("mosquitto").is_running
