"""The HTTP ingress: authenticates, validates, produces RequestReceived, and answers from the reply events."""
