"""Reading a /metrics answer in tests, with prometheus_client's own text parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def parse_scrape(text: str) -> dict[str, list]:
    """Sample name -> its samples (a counter's under its _total name, as exposed), and under
    ``families`` the names of every family, samples or not."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault("families", []).append(family.name)
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def one(samples: dict[str, list], name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` with these labels."""
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]
