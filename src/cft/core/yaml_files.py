"""The one way the pipeline reads YAML (config files, prompt files, lm-eval task files, its
own schemas): YAML's safe loader, refusing a key written twice in one mapping, where PyYAML
would keep the last value without a word."""

from __future__ import annotations

import yaml


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A key written twice in one mapping (the message names both lines)."""


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        first: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges keys that the mapping's own may override
            key = self.construct_object(key_node, deep=deep)
            if key in first:
                raise DuplicateKeyError(
                    problem=f"key {key!r} is written twice in one mapping (first on line "
                    f"{first[key]}); YAML would keep only the last value",
                    problem_mark=key_node.start_mark,
                )
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class TaskLoader(StrictLoader):
    """Reads lm-eval task YAMLs without running their ``!function`` hooks (read as None)."""


TaskLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def load_yaml(text: str, loader: type[StrictLoader] = StrictLoader):
    """``text`` parsed as YAML by ``loader`` (a SafeLoader subclass): yaml.YAMLError if it is
    not YAML or writes a key twice."""
    return yaml.load(text, Loader=loader)  # a SafeLoader subclass
