"""The hypothesis profile of the contract suites: derandomized (the same examples every run, so
CI is repeatable), no deadline (a tiny benchmark takes a second), no example database."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fsanet-contract",
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=20,
    print_blob=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
