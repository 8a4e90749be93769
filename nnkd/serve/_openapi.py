"""The OpenAPI 3.1 description of ``nnkd serve``'s HTTP API, served at ``/openapi.json``
(and checked against the live server by the tests)."""

from __future__ import annotations

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}},
          "additionalProperties": False}
_ROW = {"type": "array", "items": {"type": "number"}, "minItems": 1}
_INSTANCES = {"type": "array", "items": _ROW, "minItems": 1,
              "description": "Rows of n_features_in values each (GET /v1/model says how many)."}
_K = {"type": "integer", "minimum": 1, "default": 3, "description": "Prototypes per row for neighbours."}
_EXPLANATION = {"type": "object", "required": ["prediction"],
                "description": "Student.explain for one row: the prediction and the prototypes behind it."}
_ERRORS = {str(code): {"description": what, "content": {"application/json": {"schema": _ERROR}}}
           for code, what in ((400, "malformed body"), (408, "the body arrived too slowly"),
                              (413, "body or row count beyond the limits"), (415, "not application/json"),
                              (422, "a valid JSON body the student cannot answer (the message says why)"),
                              (500, "the student's output is not finite, or an internal error"),
                              (503, "queue full, starting or draining"))}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {"title": "nnkd serve", "version": "1",
             "description": "Predictions of a saved nnkd student (any kind), micro-batched under a latency SLO."},
    "paths": {
        "/v1/predict": {"post": {
            "summary": "Predict rows: labels (or values), probabilities, neighbours",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["instances"], "additionalProperties": False,
                "properties": {"instances": _INSTANCES, "k": _K,
                               "return": {"type": "array", "minItems": 1,
                                          "items": {"enum": ["label", "proba", "neighbors"]}}}}}}},
            "responses": {"200": _json({"type": "object", "additionalProperties": False, "properties": {
                "label": {"type": "array"}, "classes": {"type": "array"},
                "proba": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                "neighbors": {"type": "array", "items": _EXPLANATION}}}, "the answers, one per row"), **_ERRORS}}},
        "/v1/neighbors": {"post": {
            "summary": "The k nearest prototypes of each row (422 for a student without prototypes)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["instances"], "additionalProperties": False,
                "properties": {"instances": _INSTANCES, "k": _K}}}}},
            "responses": {"200": _json({"type": "object", "required": ["neighbors"], "additionalProperties": False,
                                        "properties": {"neighbors": {"type": "array", "items": _EXPLANATION}}},
                                       "one explanation per row"), **_ERRORS}}},
        "/v1/model": {"get": {"summary": "The served student, batching plan and limits", "responses": {
            "200": _json({"type": "object", "required": ["student", "batching", "limits", "status"]},
                         "description of the server")}}},
        "/healthz": {"get": {"summary": "Liveness", "responses": {
            "200": _json({"type": "object", "required": ["status"]}, "alive")}}},
        "/readyz": {"get": {"summary": "Readiness", "responses": {
            "200": _json({"type": "object", "required": ["status"]}, "ready"),
            "503": _json({"type": "object", "required": ["status"]}, "starting or draining")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": _json({"type": "object", "required": ["openapi", "paths"]}, "the OpenAPI description")}}},
        "/admin/reload": {"post": {
            "summary": "Hot reload: validate a student directory and swap it in (loopback clients only)",
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": {"path": {"type": "string"}}}}}},
            "responses": {"200": _json({"type": "object", "required": ["status", "student"]}, "reloaded"),
                          "403": _json(_ERROR, "not a loopback client"),
                          "422": _json(_ERROR, "the new student failed validation; the previous one keeps serving"),
                          "400": _json(_ERROR, "malformed body")}}},
    },
}
