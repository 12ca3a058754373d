"""The fake providers speak their documented wire format: the official SDKs, as clients, accept them."""
from __future__ import annotations

import anthropic
import openai
import pytest

from cloud_rig import ANTHROPIC_KEY, OPENAI_KEY, PNG, FakeAnthropic, FakeOpenAI

TOOLS = [{"name": "get_weather", "description": "Weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def fake_anthropic():
    f = FakeAnthropic(ANTHROPIC_KEY)
    yield f
    f.close()


@pytest.fixture(scope="module")
def fake_openai():
    f = FakeOpenAI(OPENAI_KEY)
    yield f
    f.close()


def sdk(fake, key=ANTHROPIC_KEY):
    return anthropic.Anthropic(api_key=key, base_url=fake.url[:-3], max_retries=0, timeout=5)


def test_anthropic_sdk_reads_the_fake(fake_anthropic):
    fake_anthropic.reset()
    msg = sdk(fake_anthropic).messages.create(
        model="claude-sonnet-4-20250514", max_tokens=100, system="be brief",
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": PNG.split(",", 1)[1]}}]}])
    assert msg.content[0].text == "Hello from claude-sonnet-4-20250514 (I see 1 image(s))"
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    h = fake_anthropic.headers_seen[-1]
    assert ANTHROPIC_KEY in (h.get("x-api-key"), h.get("authorization", "")[7:]) and h["anthropic-version"]


def test_anthropic_sdk_streams_tool_calls_from_the_fake(fake_anthropic):
    fake_anthropic.reset()
    with sdk(fake_anthropic).messages.stream(model="claude-sonnet-4-20250514", max_tokens=100, tools=TOOLS,
                                             messages=[{"role": "user", "content": "weather in Paris?"}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and use.input == {"city": "Paris", "unit": "celsius"}
    assert final.usage.output_tokens > 1


def test_the_fake_refuses_what_anthropic_refuses(fake_anthropic):
    fake_anthropic.reset()
    with pytest.raises(anthropic.AuthenticationError):
        sdk(fake_anthropic, key="wrong").messages.create(model="m", max_tokens=5,
                                                         messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="system"):
        sdk(fake_anthropic).messages.create(model="m", max_tokens=5, messages=[
            {"role": "system", "content": "x"}, {"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="tool_use"):
        sdk(fake_anthropic).messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}])
    fake_anthropic.mode = "rate_limited"
    with pytest.raises(anthropic.RateLimitError) as ei:
        sdk(fake_anthropic).messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ei.value.response.headers["retry-after"] == "7"


def test_openai_sdk_reads_the_fake(fake_openai):
    fake_openai.reset()
    c = openai.OpenAI(api_key=OPENAI_KEY, base_url=fake_openai.url, max_retries=0, timeout=5)
    r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from gpt-4o-mini" and r.usage.total_tokens > 0
    chunks = list(c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="bad", base_url=fake_openai.url, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
