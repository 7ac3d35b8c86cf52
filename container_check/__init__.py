"""The container check: the image built, the compose stack run, as a deploying user would.

``python -m container_check`` brings up a Docker engine (from Debian's packages when there is
none), builds the image from the Dockerfile, runs compose.yaml, and drives the stack: the
README's "Try it" requests, three workers with one of them killed, the time invariants, a
graceful stop with its final accrual, the image alone. It fails with the reason at the first
thing that does not hold. Where no registry is reachable, the base images are made locally
from Debian's archive (``bases``) and kept for the next run.
"""
