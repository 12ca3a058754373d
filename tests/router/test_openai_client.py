"""The official openai Python client against the router: chat, stream, embeddings, models."""
import openai
import pytest


@pytest.fixture
def oai(router):
    return openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0, timeout=10)


def test_chat(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model="homelab/auto", messages=[{"role": "user", "content": "refactor this FastAPI code"}])
    assert raw.headers["x-homelab-route"] == "hands"
    r = raw.parse()
    assert r.choices[0].message.content == "hands answers"
    assert r.model == "glm-4.5-air-awq" and r.usage.total_tokens == 18


def test_stream(oai):
    stream = oai.chat.completions.create(model="homelab/chat", stream=True,
                                         messages=[{"role": "user", "content": "hello"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "mouth-0 mouth-1 mouth-2 "
    assert all(c.usage is None for c in chunks)


def test_stream_with_usage(oai):
    stream = oai.chat.completions.create(model="homelab/chat", stream=True, stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "hello"}])
    chunks = list(stream)
    assert chunks[-1].usage.total_tokens == 8


def test_embeddings(oai):
    r = oai.embeddings.create(model="homelab/auto", input=["one", "two"])
    assert len(r.data) == 2 and r.data[0].embedding == [0.1, 0.2, 0.3]


def test_models(oai):
    ids = {m.id for m in oai.models.list()}
    assert {"homelab/auto", "homelab/code", "gemma-4-31b"} <= ids
    assert oai.models.retrieve("homelab/code").id == "homelab/code"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope")


def test_errors_are_openai_shaped(oai):
    with pytest.raises(openai.BadRequestError) as ei:
        oai.chat.completions.create(model="homelab/auto", messages=[{"role": "user", "content": "x"}],
                                    extra_headers={"X-Homelab-Route": "gpu9"})
    assert ei.value.code == "unknown_route"


def test_terminal_503(oai, engines):
    engines["brain"].stop()
    try:
        with pytest.raises(openai.InternalServerError) as ei:
            oai.chat.completions.create(model="homelab/review", messages=[{"role": "user", "content": "x"}])
        assert ei.value.status_code == 503
    finally:
        engines["brain"].start()
