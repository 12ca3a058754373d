"""roles/wireguard/templates/wg.conf.j2 rendered for a mesh member: one [Peer] per other mesh host (its tunnel
/32, the road warriors it serves, the networks behind it), then this host's road warriors."""

import base64
import importlib.util
import re
from pathlib import Path

import jinja2

ROLE = Path(__file__).resolve().parents[2] / "roles" / "wireguard"
_spec = importlib.util.spec_from_file_location("wireguard_filters_render", ROLE / "filter_plugins" / "wireguard.py")
wg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wg)

KEYS = [base64.b64encode(bytes([i]) * 32).decode() for i in range(4)]
HOSTS = [
    {"name": "ai-gateway", "address": "10.99.0.1/24", "endpoint": "10.30.0.10:51820", "public_key": KEYS[0],
     "road_warriors": ["10.99.0.10/32"], "routed_networks": [], "persistent_keepalive": 25},
    {"name": "cabin", "address": "10.99.0.2/24", "endpoint": "cabin.example.net:51820", "public_key": KEYS[1],
     "road_warriors": [], "routed_networks": ["192.168.50.0/24"], "persistent_keepalive": 25},
]


def render(me, road_warriors):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(wg.FilterModule().filters())
    env.filters["comment"] = lambda text: "# " + text
    me_entry = next(h for h in HOSTS if h["name"] == me)
    return env.get_template("wg.conf.j2").render(
        ansible_managed="managed", inventory_hostname=me, wireguard_interface="wg0",
        _wireguard_private_key_path="/etc/wireguard/wg0.key",
        wireguard_address=me_entry["address"], wireguard_listen_port=51820, wireguard_mtu=0, wireguard_post_up=[],
        wireguard_post_down=[], wireguard_peers=road_warriors, _wireguard_mesh=wg.wireguard_mesh_peers(HOSTS, me))


def peers(text):
    out = {}
    for block in text.split("[Peer]")[1:]:
        name = re.search(r"^# (.*)$", block, re.M).group(1)
        out[name] = dict(re.findall(r"^(\w+) = (.*)$", block, re.M))
    return out


def test_gateway_config_has_the_cabin_and_its_road_warrior():
    text = render("ai-gateway", [{"name": "laptop", "public_key": KEYS[3], "allowed_ips": ["10.99.0.10/32"]}])
    got = peers(text)
    assert list(got) == ["mesh: cabin", "road warrior: laptop"]
    assert got["mesh: cabin"] == {"PublicKey": KEYS[1], "AllowedIPs": "10.99.0.2/32, 192.168.50.0/24",
                                  "Endpoint": "cabin.example.net:51820", "PersistentKeepalive": "25"}
    assert got["road warrior: laptop"]["AllowedIPs"] == "10.99.0.10/32"
    assert "Address = 10.99.0.1/24" in text and "PrivateKey" not in text


def test_cabin_routes_the_gateways_road_warrior_through_the_gateway():
    got = peers(render("cabin", []))
    assert list(got) == ["mesh: ai-gateway"]
    assert got["mesh: ai-gateway"]["AllowedIPs"] == "10.99.0.1/32, 10.99.0.10/32"
    assert got["mesh: ai-gateway"]["Endpoint"] == "10.30.0.10:51820"
