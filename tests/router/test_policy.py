"""Pure policy tests: seed 003's bucket table, size promotions, overrides, image handling, explain."""
import json
import subprocess
import sys

import pytest

from conftest import EXAMPLE, ROOT
from router_app.access.protocol import ApiError
from router_app.cli import main as cli_main
from router_app.decision.config import load_config
from router_app.decision.policy import Policy, RequestView, decide, view_from_chat, view_from_completion

POLICY = Policy(load_config(EXAMPLE))

# seed 003: bucket -> default target and its example keywords
BUCKET_TABLE = {
    "vision": ("eyes", ["image", "screenshot", "ring", "frigate", "motion"]),
    "notification": ("mouth", ["sms", "alert", "push notification"]),
    "fast": ("eyes", ["classify", "json", "tags", "label", "summarize briefly"]),
    "general_chat": ("mouth", ["tell me about", "ask", "what is", "how do i", "opinion"]),
    "utility": ("mouth", ["rewrite", "clean up", "format", "paraphrase", "polish", "translate"]),
    "medium_summary": ("mouth", ["summarize", "tl;dr", "condense", "recap", "executive summary"]),
    "coding": ("hands", ["refactor", "implement", "code", "FastAPI", "pytest"]),
    "agentic": ("hands", ["agent", "multi-step", "tool use", "OpenCode", "Hermes"]),
    "reasoning": ("brain", ["architecture", "trade-off", "review", "risk", "plan"]),
}


def d_for(text, **kw):
    body = {"model": kw.pop("model", "homelab/auto"), "messages": [{"role": "user", "content": text}]}
    body.update(kw.pop("body", {}))
    return decide(POLICY, view_from_chat(body, kw.pop("route_header", None), kw.pop("bucket_header", None)),
                  kw.pop("drained", frozenset()), kw.pop("allowed", None))


@pytest.mark.parametrize("bucket,route,kw", [(b, r, k) for b, (r, ks) in BUCKET_TABLE.items() for k in ks])
def test_bucket_table_every_keyword(bucket, route, kw):
    d = d_for(f"Zzz {kw.upper()} zzz.")
    assert (d.bucket, d.route, d.reason) == (bucket, route, "bucket_match")
    assert kw.lower() in d.matched[bucket]


def test_unknown_bucket_goes_to_brain():
    d = d_for("hello there, nice weather")
    assert (d.bucket, d.route, d.reason) == ("unknown", "brain", "no_match")


def test_notification_with_image_goes_to_eyes():
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "send an sms alert"}, {"type": "image_url", "image_url": {"url": "x"}}]}]}
    d = decide(POLICY, view_from_chat(body))
    assert (d.bucket, d.route, d.reason) == ("vision", "eyes", "image_present")
    assert d.matched == {"notification": ["alert", "sms"]}


def test_word_boundaries_and_phrases():
    assert d_for("a string with a ringtone").bucket == "unknown"        # "ring" is not in "string"
    assert d_for("emotional codebase").bucket == "unknown"
    assert d_for("the RING doorbell").bucket == "vision"
    assert d_for("send a push\n  notification").matched == {"notification": ["push notification"]}
    assert d_for("tl;dr please").bucket == "medium_summary"
    assert d_for("multi-step").bucket == "agentic"
    # "summarize briefly" also contains "summarize": fast and medium_summary tie, fast wins the tie-break
    d = d_for("summarize briefly")
    assert d.scores == {"fast": 1, "medium_summary": 1} and d.bucket == "fast"


def test_scores_count_distinct_keywords_once():
    d = d_for("code code code code, review the risk")
    assert d.scores == {"coding": 1, "reasoning": 2}
    assert d.bucket == "reasoning"


def test_tie_break_vision_coding_reasoning_chat():
    assert d_for("review this code").bucket == "coding"              # coding > reasoning
    assert d_for("screenshot of the code").bucket == "vision"         # vision > coding
    assert d_for("what is the risk").bucket == "reasoning"            # reasoning > general_chat
    assert d_for("review the security of this code").route == "brain"  # the seed's example lands on Spark


def test_only_system_and_user_text_is_classified():
    body = {"messages": [{"role": "system", "content": "You review architecture."},
                         {"role": "assistant", "content": "refactor implement code pytest fastapi"},
                         {"role": "user", "content": [{"type": "text", "text": "and the plan?"}]}]}
    d = decide(POLICY, view_from_chat(body))
    assert d.bucket == "reasoning" and "coding" not in d.scores


# seed 003 size promotion table: bucket -> (<=8K, 8K-24K, >24K)
PROMOTION_TABLE = {
    "vision": ("eyes", "eyes", "eyes"),
    "coding": ("hands", "hands", "hands"),
    "agentic": ("hands", "hands", "hands"),
    "reasoning": ("brain", "brain", "brain"),
    "fast": ("eyes", "hands", "brain"),
    "general_chat": ("mouth", "mouth", "brain"),
    "utility": ("mouth", "mouth", "brain"),
    "medium_summary": ("mouth", "mouth", "brain"),
}


@pytest.mark.parametrize("bucket", list(PROMOTION_TABLE))
@pytest.mark.parametrize("tokens,col", [(100, 0), (8000, 0), (8001, 1), (24000, 1), (24001, 2), (60000, 2)])
def test_size_promotion_table(bucket, tokens, col):
    view = RequestView(bucket_header=bucket, text="", total_chars=tokens * 4)
    d = decide(POLICY, view)
    assert d.bucket == bucket
    assert d.route == PROMOTION_TABLE[bucket][col]
    promoted = d.route != POLICY.buckets[bucket]
    assert (d.reason == "size_promotion") == promoted


def test_token_estimate_is_chars_over_four_of_all_text():
    body = {"messages": [{"role": "system", "content": "a" * 40}, {"role": "assistant", "content": "b" * 40},
                         {"role": "user", "content": [{"type": "text", "text": "c" * 21}]}]}
    assert view_from_chat(body).est_tokens == 26     # ceil(101 / 4)
    assert view_from_completion({"prompt": ["x" * 8, "y" * 8]}).est_tokens == 4


def test_size_promotion_with_classifier_and_big_prompt():
    d = d_for("tell me about " + "blah " * 30000)     # ~37.5K tokens of chat
    assert (d.bucket, d.route, d.reason) == ("general_chat", "brain", "size_promotion")


def test_overrides_strongest_first():
    body = {"metadata": {"homelab_bucket": "utility"}}
    # route header beats everything
    d = d_for("refactor code", model="homelab/chat", route_header="brain", bucket_header="fast", body=body)
    assert (d.route, d.reason, d.pin) == ("brain", "header_pin", "route")
    d = d_for("refactor code", route_header="homelab/vision")          # an alias in the header
    assert d.route == "eyes"
    # bucket header beats model and metadata
    d = d_for("refactor code", model="homelab/chat", bucket_header="fast", body=body)
    assert (d.bucket, d.route, d.reason) == ("fast", "eyes", "header_pin")
    # alias / route name / route model id are route pins
    for m, r in (("homelab/chat", "mouth"), ("hands", "hands"), ("qwen3.6-35b-a3b-fp8", "brain")):
        d = d_for("refactor code", model=m, body=body)
        assert (d.route, d.reason, d.pin) == (r, "model_pin", "route")
    # homelab/<bucket> that is not an alias pins the bucket
    d = d_for("refactor code", model="homelab/medium_summary", body=body)
    assert (d.bucket, d.route, d.reason, d.pin) == ("medium_summary", "mouth", "model_pin", "bucket")
    # alias homelab/vision is an alias (route pin), not the bucket
    assert d_for("x", model="homelab/vision").pin == "route"
    # metadata hint beats the classifier
    d = d_for("refactor code", body=body)
    assert (d.bucket, d.reason) == ("utility", "metadata_hint")
    # any other model name -> 404 model_not_found (issue 11 item 6); the classifier when the operator opts in
    with pytest.raises(ApiError) as ei:
        d_for("refactor code", model="gpt-4o")
    assert ei.value.status == 404 and ei.value.code == "model_not_found"
    cfg = load_config(EXAMPLE).model_copy(update={"route_unknown_models": True})
    d = decide(Policy(cfg), view_from_chat({"model": "gpt-4o", "messages": [{"role": "user", "content": "refactor"}]}))
    assert (d.bucket, d.reason) == ("coding", "bucket_match")


def test_alias_pin_gets_no_size_promotion():
    d = d_for("x" * 200000, model="homelab/chat")
    assert (d.route, d.reason) == ("mouth", "model_pin")


def test_unknown_pins_are_400():
    with pytest.raises(ApiError) as ei:
        d_for("x", route_header="gpu9")
    assert ei.value.status == 400 and ei.value.code == "unknown_route"
    with pytest.raises(ApiError) as ei:
        d_for("x", bucket_header="nope")
    assert ei.value.status == 400
    with pytest.raises(ApiError) as ei:
        d_for("x", body={"metadata": {"homelab_bucket": "nope"}})
    assert ei.value.status == 400


def test_image_rules():
    img = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    body = {"model": "homelab/coding", "metadata": {"homelab_bucket": "utility"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "refactor this code"}, img]}]}
    d = decide(POLICY, view_from_chat(body))
    assert (d.bucket, d.route, d.reason, d.has_image) == ("vision", "eyes", "image_present", True)
    assert d.fallback == ["brain"] and d.spill == "brain"            # the asymmetric eyes fallback for images
    text_d = d_for("a screenshot")
    assert text_d.spill == "mouth" and text_d.fallback == ["brain"]  # ... and for text
    body["model"] = "homelab/chat"                                   # pinned to a blind route
    with pytest.raises(ApiError) as ei:
        decide(POLICY, view_from_chat(body))
    assert ei.value.status == 400 and "eyes" in ei.value.message and "brain" in ei.value.message
    body["model"] = "brain"
    assert decide(POLICY, view_from_chat(body)).route == "brain"
    # input_image parts (responses-style) count too
    b2 = {"messages": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}
    assert decide(POLICY, view_from_chat(b2)).route == "eyes"


def test_drained_routes_are_skipped_for_auto_traffic_only():
    d = d_for("tell me about cats", drained={"mouth"})
    assert (d.route, d.reason, d.path) == ("brain", "mouth_drained", ["mouth"])
    assert d_for("tell me about cats", model="homelab/chat", drained={"mouth"}).route == "mouth"   # alias pin passes
    assert d_for("x", route_header="mouth", drained={"mouth"}).route == "mouth"
    assert d_for("x", model="homelab/general_chat", drained={"mouth"}).route == "brain"      # bucket pin does not
    with pytest.raises(ApiError) as ei:
        d_for("plan it", drained={"brain"})
    assert ei.value.status == 503 and ei.value.headers.get("Retry-After")


def test_allowed_routes_follow_the_failover_chain():
    d = d_for("refactor code", allowed=frozenset({"brain"}))
    assert (d.route, d.reason) == ("brain", "hands_forbidden")
    with pytest.raises(ApiError) as ei:
        d_for("x", model="homelab/code", allowed=frozenset({"brain"}))
    assert ei.value.status == 403


def test_auto_routing_stays_within_the_key():
    """Issue 11 item 9: a chat-only key sending 'refactor this' is served by a route it may use, not a 403."""
    chat_only = frozenset({"mouth"})
    d = d_for("refactor code", allowed=chat_only)
    assert (d.bucket, d.route, d.reason, d.path) == ("coding", "mouth", "hands_forbidden", ["hands"])
    # another bucket that scored wins first (best score, then tie_break): coding is forbidden, utility scored
    d = d_for("refactor and rewrite this", allowed=chat_only)
    assert (d.bucket, d.route, d.reason) == ("utility", "mouth", "hands_forbidden")
    # then the failover chain: hands -> brain
    d = d_for("refactor and rewrite this", allowed=frozenset({"brain", "eyes"}))
    assert (d.bucket, d.route) == ("coding", "brain")
    # an image needs a route that sees: a key with only the blind mouth gets a 403
    with pytest.raises(ApiError) as ei:
        d_for("what is this", body={"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]}, allowed=chat_only)
    assert ei.value.status == 403
    # drained routes are not candidates
    assert d_for("refactor code", allowed=frozenset({"mouth", "eyes"}), drained={"mouth"}).route == "eyes"
    # pins are never rerouted
    with pytest.raises(ApiError) as ei:
        d_for("x", model="homelab/code", allowed=chat_only)
    assert ei.value.status == 403
    with pytest.raises(ApiError) as ei:
        d_for("refactor code", model="homelab/coding", allowed=chat_only)
    assert ei.value.status == 403


def test_same_request_same_decision():
    a = d_for("review the trade-off of this architecture plan for the code")
    b = d_for("review the trade-off of this architecture plan for the code")
    assert a.to_dict() == b.to_dict()


def test_explain_cli(capsys, tmp_path):
    assert cli_main(["explain", "--config", str(EXAMPLE), "please", "refactor", "this", "FastAPI", "code"]) == 0
    out = capsys.readouterr().out
    assert "bucket:   coding" in out and "route:    hands" in out and "reason:   bucket_match" in out
    assert "coding=3 [code, fastapi, refactor]" in out and "hands -> brain -> 503" in out and "if busy:  mouth" in out
    assert cli_main(["explain", "--config", str(EXAMPLE), "--image", "--json", "what", "is", "this"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["route"] == "eyes" and js["spill"] == "brain" and js["fallback"] == ["brain", "503"]
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"model": "homelab/auto", "messages": [{"role": "user", "content": "sms alert"}]}))
    assert cli_main(["explain", "--config", str(EXAMPLE), "--request", str(req), "--header", "X-Homelab-Route=brain",
                     "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["route"] == "brain" and js["reason"] == "header_pin"
    assert cli_main(["explain", "--config", str(EXAMPLE), "--model", "homelab/chat", "--image", "x"]) == 3
    assert "HTTP 400" in capsys.readouterr().out


def test_explain_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "router_app", "explain", "--config", str(EXAMPLE), "--drained", "mouth",
                        "tl;dr", "of", "this"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "route:    brain" in r.stdout and "mouth_drained" in r.stdout


def test_partially_overlapping_phrases_both_count():
    from router_app.decision.policy import Classifier
    c = Classifier({"a": ["tool use"], "b": ["use case"]}, {})
    assert c.matches("the Tool  use case") == {"tool use", "use case"}


def test_classifier_agrees_with_a_brute_force_search():
    import random
    import re
    rng = random.Random(7)
    kws = sorted(POLICY.classifier.kw_buckets)
    filler = ["the", "string", "ringing", "codes", "summarize", "briefly", "push", "notification", "tl", "dr", ";",
              "-", "multi", "step", "how", "do", "i", "executive", "summary", "clean", "up", "x"]
    for _ in range(300):
        words = [rng.choice(kws + filler) for _ in range(rng.randint(1, 12))]
        text = rng.choice([" ", "  ", "\n", ", "]).join(words)
        expect = {k for k in kws if re.search(r"(?<!\w)" + r"\s+".join(map(re.escape, k.split())) + r"(?!\w)",
                                              text.lower())}
        assert POLICY.classifier.matches(text) == expect, text
