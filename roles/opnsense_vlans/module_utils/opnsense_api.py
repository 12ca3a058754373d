# -*- coding: utf-8 -*-
# homelab-ai: the OPNsense REST API client shared by the opnsense_vlans role's modules
# (key/secret basic auth, TLS verified, JSON in and out, clear errors for 401/403/TLS failures).

from __future__ import annotations

import base64
import json
import re

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url


class ApiError(Exception):
    pass


def version_tuple(text):
    m = re.match(r"^\s*(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


class OPNsenseClient(object):
    def __init__(self, module):
        p = module.params
        self.module = module
        self.base = p["api_url"].rstrip("/")
        self.auth = "Basic " + base64.b64encode(
            ("%s:%s" % (p["api_key"], p["api_secret"])).encode()).decode()
        self.validate_certs = p["validate_certs"]
        self.ca_path = p["ca_path"]
        self.timeout = p["timeout"]

    def call(self, method, path, payload=None):
        url = "%s/api/%s" % (self.base, path)
        data = None
        headers = {"Authorization": self.auth, "Accept": "application/json"}
        if method == "POST":
            data = json.dumps(payload if payload is not None else {}).encode()
            headers["Content-Type"] = "application/json"
        kwargs = dict(method=method, data=data, headers=headers, validate_certs=self.validate_certs,
                      timeout=self.timeout, follow_redirects="none")
        if self.ca_path:
            kwargs["ca_path"] = self.ca_path
        try:
            resp = open_url(url, **kwargs)
            body = resp.read()
        except HTTPError as e:
            try:
                detail = json.loads(e.read().decode() or "{}")
            except ValueError:
                detail = {}
            if e.code == 401:
                raise ApiError("OPNsense rejected the API key/secret (HTTP 401 Authentication Failed) for %s; "
                               "check opnsense_vlans_api_key/opnsense_vlans_api_secret" % self.base)
            if e.code == 403:
                raise ApiError("OPNsense API user lacks the privilege for %s (HTTP 403)" % path)
            msg = detail.get("errorMessage") or detail.get("message") or e.reason
            raise ApiError("OPNsense %s %s failed (HTTP %s): %s" % (method, path, e.code, msg))
        except URLError as e:
            reason = str(getattr(e, "reason", e))
            if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason.lower():
                raise ApiError("TLS verification of %s failed (%s); give the CA that signed the firewall "
                               "certificate in opnsense_vlans_api_ca_path" % (self.base, reason))
            raise ApiError("cannot reach the OPNsense API at %s: %s" % (self.base, reason))
        except Exception as e:  # ssl.SSLError and friends surface here on some Pythons
            text = str(e)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text.lower():
                raise ApiError("TLS verification of %s failed (%s); give the CA that signed the firewall "
                               "certificate in opnsense_vlans_api_ca_path" % (self.base, text))
            raise ApiError("request to %s failed: %s" % (url, text))
        try:
            return json.loads(body.decode() or "null")
        except ValueError:
            raise ApiError("OPNsense %s %s returned non-JSON data" % (method, path))

    def search(self, path):
        res = self.call("POST", path, {"current": 1, "rowCount": -1, "searchPhrase": ""})
        if not isinstance(res, dict) or "rows" not in res:
            raise ApiError("unexpected answer from %s: %r" % (path, res))
        return res["rows"]

    def write(self, path, payload=None):
        res = self.call("POST", path, payload)
        if isinstance(res, dict) and res.get("result") == "failed":
            raise ApiError("OPNsense refused %s: %s" % (path, json.dumps(res.get("validations", res), sort_keys=True)))
        return res
