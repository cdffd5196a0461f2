"""Who may ask, and for what. A request on the requests topic either came through an ingress (which signs
it: `infra/secrets.py`) or from a service declared in the configuration, acting for its own project and
asking for answers on its own reply topics, and signed with its own secret when it declares one. Anything
else is refused, never answered where it asks."""

from __future__ import annotations

import hmac
from typing import Any

from infra.config import Settings
from infra.secrets import RequestSigner, service_signature

SERVICE_PREFIX = "service:"


class Identities:
    def __init__(self, settings: Settings) -> None:
        self._signer = RequestSigner(settings.signing_secret, settings.previous_secrets)
        self._services = settings.config.services
        self._secrets = {name: secret for name, service in self._services.items() if (secret := service.secret())}

    def refusal(self, request: dict[str, Any], signature: str | None) -> str | None:
        """None when the request may be answered, else why not."""
        if self._signer.verify(request, signature):
            return None
        key_id: str = request["key_id"]
        if not key_id.startswith(SERVICE_PREFIX):
            return (f"key_id {key_id!r} is neither signed by an ingress nor a service identity "
                    f"('{SERVICE_PREFIX}<name>' declared under 'services')")
        name = key_id[len(SERVICE_PREFIX):]
        service = self._services.get(name)
        if service is None:
            return f"no service named {name!r} is declared under 'services'"
        if request["project"] != service.project:
            return f"service {name!r} acts for project {service.project!r}, not {request['project']!r}"
        if request["reply_topic"] not in service.reply_topics:
            return f"service {name!r} may be answered on {service.reply_topics}, not on {request['reply_topic']!r}"
        if service.secret_env is None:
            return None  # the broker's ACLs back the claim
        secret = self._secrets.get(name)
        if secret is None:
            return f"service {name!r} signs its requests with the secret in {service.secret_env}, not set here"
        if not signature or not hmac.compare_digest(service_signature(secret, request), signature):
            return f"service {name!r} must sign its requests (gateway-signature): {'wrong' if signature else 'none'}"
        return None
