import copy
import subprocess
import sys

import pytest

from conftest import EXAMPLE, ROOT, example_dict
from router_app.cli import main as cli_main
from router_app.decision.config import ConfigInvalid, load_config, validate_dict


def errs(cfg):
    return {(e.path, e.message) for e in validate_dict(cfg)}


def paths(cfg):
    return {e.path for e in validate_dict(cfg)}


def test_example_config_is_valid():
    assert validate_dict(example_dict()) == []
    cfg = load_config(EXAMPLE)
    assert set(cfg.routes) == {"eyes", "hands", "brain", "mouth"}
    assert len(cfg.buckets) == 11
    assert cfg.routes["mouth"].max_concurrency == 3
    assert cfg.routes["brain"].terminal and not cfg.routes["brain"].failover
    assert cfg.routes["eyes"].spill_target(False) == "mouth"
    assert cfg.routes["eyes"].spill_target(True) == "brain"


def mutated(fn):
    cfg = copy.deepcopy(example_dict())
    fn(cfg)
    return cfg


@pytest.mark.parametrize("mutate,path,fragment", [
    (lambda c: c["buckets"]["coding"].update(route="gpu9"), "buckets.coding.route", "unknown route 'gpu9'"),
    (lambda c: c["routes"]["hands"].update(spill="nowhere"), "routes.hands.spill", "unknown route"),
    (lambda c: c["routes"]["eyes"]["spill"].update(text="ghost"), "routes.eyes.spill.text", "unknown route"),
    (lambda c: c["routes"]["mouth"].update(failover="ghost"), "routes.mouth.failover", "unknown route"),
    (lambda c: c["size_promotions"]["fast"][0].update(route="ghost"), "size_promotions.fast[0].route",
     "unknown route"),
    (lambda c: c["size_promotions"].update(nope=[{"over_tokens": 1, "route": "brain"}]), "size_promotions.nope",
     "unknown bucket"),
    (lambda c: c["embeddings"].update(route="ghost"), "embeddings.route", "unknown route"),
    (lambda c: c["tie_break"].append("ghost"), "tie_break[10]", "unknown bucket"),
    (lambda c: c["routes"]["hands"]["aliases"].append("homelab/vision"), "routes.hands.aliases[2]",
     "duplicate alias"),
    (lambda c: c["routes"]["eyes"].update(spill="mouth"), "routes.eyes.spill", "no vision"),
    (lambda c: c["routes"]["eyes"]["spill"].update(image="mouth"), "routes.eyes.spill.image", "no vision"),
    (lambda c: c["routes"]["eyes"].update(failover="mouth"), "routes.eyes.failover", "no vision"),
    (lambda c: c["buckets"].pop("unknown"), "buckets", "'unknown' is required"),
    (lambda c: c["routes"]["mouth"].pop("failover"), "routes.mouth.failover", "required unless"),
    (lambda c: c["routes"]["brain"].update(failover="mouth"), "routes.brain", "terminal route has no spill"),
    (lambda c: c["routes"]["eyes"].update(max_concurrency=0), "routes.eyes.max_concurrency", "greater than"),
    (lambda c: c["routes"]["eyes"].update(colour="blue"), "routes.eyes.colour", "unknown key"),
    (lambda c: c["routes"]["eyes"].update(url="10.0.0.1:8000"), "routes.eyes.url", "http://"),
    (lambda c: c["buckets"]["vision"].update(route="mouth"), "buckets.vision.route", "no vision"),
])
def test_semantic_and_schema_errors(mutate, path, fragment):
    found = errs(mutated(mutate))
    assert any(p == path and fragment in m for p, m in found), found


def test_no_terminal_route_and_cycle():
    def no_terminal(c):
        c["routes"]["brain"]["terminal"] = False
        c["routes"]["brain"]["failover"] = "mouth"
    found = errs(mutated(no_terminal))
    assert any("no terminal route" in m for _, m in found), found

    def cycle(c):
        c["routes"]["hands"]["spill"] = "mouth"
        c["routes"]["mouth"]["spill"] = "hands"
    found = errs(mutated(cycle))
    assert any("cycle" in m and "hands" in m and "mouth" in m for _, m in found), found


def test_every_error_is_reported_at_once():
    def many(c):
        c["buckets"]["coding"]["route"] = "x1"
        c["buckets"]["agentic"]["route"] = "x2"
        c["embeddings"]["route"] = "x3"
    assert {"buckets.coding.route", "buckets.agentic.route", "embeddings.route"} <= paths(mutated(many))


def test_load_config_raises_config_invalid(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("routes: {a: {url: http://x/v1, model: m, terminal: true}}\nbuckets: {unknown: {route: b}}\n")
    with pytest.raises(ConfigInvalid) as ei:
        load_config(p)
    assert [(e.path, e.message) for e in ei.value.errors] == [("buckets.unknown.route", "unknown route 'b'")]
    p.write_text("routes: [\n")
    with pytest.raises(ConfigInvalid) as ei:
        load_config(p)
    assert "YAML syntax error" in ei.value.errors[0].message
    with pytest.raises(ConfigInvalid):
        load_config(tmp_path / "missing.yaml")


def test_minimal_single_route_config(tmp_path):
    p = tmp_path / "one.yaml"
    p.write_text("routes: {only: {url: 'http://127.0.0.1:9/v1', model: m, terminal: true}}\n"
                 "buckets: {unknown: {route: only}}\n")
    cfg = load_config(p)
    assert cfg.listen.port == 4000 and cfg.max_body_bytes == 32 * 1024 * 1024 and cfg.log_dir == "./logs"


def test_check_config_cli(tmp_path, capsys):
    assert cli_main(["check-config", str(EXAMPLE)]) == 0
    assert "ok:" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    import yaml
    bad.write_text(yaml.safe_dump(mutated(lambda c: (c["buckets"]["coding"].update(route="gpu9"),
                                                     c["routes"]["eyes"].update(failover="mouth")))))
    assert cli_main(["check-config", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "buckets.coding.route: unknown route 'gpu9'" in out
    assert any(line.startswith("routes.eyes.failover: ") for line in out)


def test_check_config_console_entry():
    r = subprocess.run([sys.executable, "-m", "router_app", "check-config", str(EXAMPLE)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_duplicate_yaml_keys_are_refused(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("routes:\n  a: {url: 'http://x/v1', model: m, terminal: true}\n"
                 "  a: {url: 'http://y/v1', model: n, terminal: true}\nbuckets: {unknown: {route: a}}\n")
    with pytest.raises(ConfigInvalid) as ei:
        load_config(p)
    e = ei.value.errors[0]
    assert e.path == "line 3, column 3" and "duplicate key 'a'" in e.message
