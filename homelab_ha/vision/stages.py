"""The two model stages, both through homelab-router's OpenAI-compatible /v1/chat/completions.

Stage 1 pins the fast vision route (``homelab/vision`` -> eyes) and asks for a verdict with
``response_format: {"type": "json_schema", ...}``. The router guarantees the answer is either valid against the
schema or its fail-closed envelope ``{"action": "escalate", ...}`` (router_app/access/structured.py); anything
else (an error, a non-JSON body) is treated here as *ambiguous*, never as a negative.
Stage 2 pins the senior route (``homelab/reasoning`` -> brain) for a description; the brain is terminal, so when it is
down the router answers 503 and the caller builds a synthetic envelope from stage 1's verdict.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Optional

VERDICT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["verdict", "confidence", "summary"],
    "properties": {
        "verdict": {"type": "string", "enum": ["positive", "negative", "ambiguous"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "summary": {"type": "string", "maxLength": 500},
        "objects": {"type": "array", "items": {"type": "string"}},
    },
}

STAGE1_PROMPT = ("Security camera event: {label} on camera {camera}. Is this worth notifying the household? "
                 "positive = a person, vehicle or animal of interest is clearly present; negative = nothing of "
                 "interest (shadows, rain, foliage, lighting); ambiguous = unsure. Answer with the JSON schema.")
STAGE2_PROMPT = ("Describe this security camera image for a phone notification in one to three sentences: who or "
                 "what is there and what they are doing. Camera: {camera}. Fast classifier said: {summary}")


class StageError(RuntimeError):
    pass


@dataclass
class Verdict:
    verdict: str             # positive | negative | ambiguous
    confidence: float
    summary: str
    source: str              # model | router_envelope | error
    detail: str = ""


class RouterClient:
    def __init__(self, base_url: str, api_key: Optional[str], stage1_model: str = "homelab/vision",
                 stage2_model: str = "homelab/reasoning", timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.stage1_model, self.stage2_model = stage1_model, stage2_model
        self.timeout_s = timeout_s

    def _chat(self, body: dict) -> str:
        data = json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + "/chat/completions", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:  # noqa: S310 - URL from the config
                answer = json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                msg = json.loads(e.read()).get("error", {}).get("message", "")
            except (ValueError, AttributeError):
                msg = ""
            raise StageError(f"router answered {e.code} {msg}".strip()) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise StageError(f"router unreachable: {e}") from None
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise StageError("router answer has no choices[0].message.content") from None
        if not isinstance(content, str) or not content.strip():
            raise StageError("empty answer")
        return content

    @staticmethod
    def _content(text: str, image: Optional[bytes]) -> list | str:
        if not image:
            return text
        url = "data:image/jpeg;base64," + base64.b64encode(image).decode()
        return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]

    def classify(self, camera: str, label: str, image: Optional[bytes]) -> Verdict:
        body = {"model": self.stage1_model, "temperature": 0, "max_tokens": 200,
                "messages": [{"role": "user", "content": self._content(
                    STAGE1_PROMPT.format(label=label, camera=camera), image)}],
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": "camera_verdict", "strict": True, "schema": VERDICT_SCHEMA}}}
        try:
            content = self._chat(body)
        except StageError as e:
            return Verdict("ambiguous", 0.0, f"stage 1 failed: {e}", "error", str(e))
        try:
            v = json.loads(content)
        except ValueError:
            return Verdict("ambiguous", 0.0, "stage 1 answer is not JSON", "error", content[:200])
        if isinstance(v, dict) and v.get("action") == "escalate":
            return Verdict("ambiguous", 0.0, "router fail-closed envelope", "router_envelope",
                           str(v.get("reason", "")))
        if (not isinstance(v, dict) or v.get("verdict") not in ("positive", "negative", "ambiguous")
                or not isinstance(v.get("confidence"), (int, float)) or isinstance(v.get("confidence"), bool)):
            return Verdict("ambiguous", 0.0, "stage 1 answer off schema", "error", content[:200])
        return Verdict(v["verdict"], float(v["confidence"]), str(v.get("summary", "")), "model")

    def describe(self, camera: str, verdict: Verdict, image: Optional[bytes]) -> str:
        body = {"model": self.stage2_model, "max_tokens": 300,
                "messages": [{"role": "user", "content": self._content(
                    STAGE2_PROMPT.format(camera=camera, summary=verdict.summary), image)}]}
        return self._chat(body).strip()
