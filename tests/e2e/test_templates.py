"""Prompt templates: versioned, rendered in a sandbox with the request's variables, on both APIs; missing,
extra or unsafe variables fail clearly; the version that answered is in the usage event."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, GATEWAY_KEY, Gateway


def _template(gateway: Gateway, name: str, question_prefix: str, published: bool = True) -> dict[str, Any]:
    response = httpx.post(gateway.url + "/v1/admin/templates", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                          json={"name": name, "published": published, "messages": [
                              {"role": "system", "content": "You are {{ product }} support."},
                              {"role": "user", "content": question_prefix + "{{ question }}"}]})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _ask(gateway: Gateway, **body: Any) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/gateway/chat", headers=gateway.headers(), timeout=30,
                      json={"model": "gpt-4o", **body})


@pytest.fixture
def support(gateway: Gateway) -> str:
    name = f"support-{uuid.uuid4().hex[:6]}"
    assert _template(gateway, name, "Question: ")["version"] == 1
    return name


def test_a_template_renders_its_variables_and_is_recorded_in_usage(gateway: Gateway, support: str) -> None:
    response = _ask(gateway, prompt_id=support, variables={"product": "Acme", "question": "where is my order?"})

    assert response.status_code == 200, response.text
    assert response.json()["content"] == "Hello from the mock! You said: Question: where is my order?"
    usage = gateway.events(gateway.topics.usage, response.json()["id"])[0]
    assert (usage["prompt_id"], usage["prompt_version"]) == (support, 1)


def test_the_latest_published_version_answers_unless_one_is_named(gateway: Gateway, support: str) -> None:
    _template(gateway, support, "Q2: ")
    _template(gateway, support, "Q3 draft: ", published=False)
    variables = {"product": "Acme", "question": "hi"}

    latest = _ask(gateway, prompt_id=support, variables=variables).json()["content"]
    first = _ask(gateway, prompt_id=support, prompt_version=1, variables=variables).json()["content"]
    draft = _ask(gateway, prompt_id=support, prompt_version=3, variables=variables).json()["content"]

    assert latest.endswith("Q2: hi") and first.endswith("Question: hi") and draft.endswith("Q3 draft: hi")


def test_the_openai_sdk_names_a_template_through_extra_body(gateway: Gateway, support: str) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "and one more thing"}],
        extra_body={"prompt_id": support, "variables": {"product": "Acme", "question": "refund?"}})

    # The template's messages come first, the request's own after them.
    assert completion.choices[0].message.content == "Hello from the mock! You said: and one more thing"


@pytest.mark.parametrize(("variables", "status", "code", "param"), [
    ({"product": "Acme"}, 400, "missing_required_parameter", "variables.question"),
    ({"product": "Acme", "question": "q", "mood": "sad"}, 400, "invalid_value", "variables.mood"),
])
def test_missing_or_extra_variables_are_a_400_naming_them(gateway: Gateway, support: str, variables: dict[str, str],
                                                           status: int, code: str, param: str) -> None:
    response = _ask(gateway, prompt_id=support, variables=variables)

    assert response.status_code == status, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (code, param)


def test_an_unknown_template_or_version_is_a_404(gateway: Gateway, support: str) -> None:
    for body in ({"prompt_id": "no-such-template"}, {"prompt_id": support, "prompt_version": 99}):
        response = _ask(gateway, **body, variables={"product": "a", "question": "b"})
        assert response.status_code == 404 and response.json()["error"]["code"] == "prompt_not_found"


def test_a_template_cannot_reach_python_internals(gateway: Gateway) -> None:
    name = f"evil-{uuid.uuid4().hex[:6]}"
    created = httpx.post(gateway.url + "/v1/admin/templates", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                         json={"name": name, "messages": [
                             {"role": "user", "content": "{{ x.__class__.__mro__[1].__subclasses__() }}"}]})
    assert created.status_code == 201

    response = _ask(gateway, prompt_id=name, variables={"x": "text"})
    assert response.status_code == 400 and "could not be rendered" in response.json()["error"]["message"]


def test_a_template_that_does_not_parse_is_refused_at_creation(gateway: Gateway) -> None:
    response = httpx.post(gateway.url + "/v1/admin/templates", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                          json={"name": "broken", "messages": [{"role": "user", "content": "{{ unclosed"}]})

    assert response.status_code == 400 and response.json()["error"]["param"] == "messages[0].content"


def test_messages_are_needed_without_a_template(gateway: Gateway) -> None:
    assert _ask(gateway).json()["error"]["param"] == "messages"
    assert _ask(gateway, variables={"a": "b"}, messages=[{"role": "user", "content": "x"}]).status_code == 400
