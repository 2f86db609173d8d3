"""JSON schema to llama.cpp grammar, with variable-length tuples.

llama-cpp-python's converter turns ``prefixItems`` into a tuple of exactly that many items,
ignoring ``minItems``/``maxItems``. Foreman's order-constrained plan schema needs "the first
k of these items, for any k in [minItems, len]", so this converter emits nested optional
groups: ``"[" t1 ("," t2 ("," t3)?)? "]"``. It also writes string lengths as llama.cpp's
``char{m,n}`` repetition instead of n nested groups, which crash its parser for long strings.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, LlamaGrammar, SchemaConverter


class _Converter(SchemaConverter):
    def visit(self, schema: dict[str, Any], name: str) -> str:
        if schema.get("type") == "string" and "maxLength" in schema and len(schema) <= 4:
            char = self._add_primitive("char", PRIMITIVE_RULES["char"])
            low, high = schema.get("minLength", 0), schema["maxLength"]
            return self._add_rule(name or "root", rf'"\"" {char}{{{low},{high}}} "\"" space')
        prefix = schema.get("prefixItems")
        if not isinstance(prefix, list) or schema.get("items", False) is not False:
            return super().visit(schema, name)
        base = f"{name}{'-' if name else ''}tuple"
        items = [self.visit(item, f"{base}-{i}") for i, item in enumerate(prefix)]
        least = max(1, schema.get("minItems", len(items)))
        rule = ""
        for index in range(len(items) - 1, 0, -1):
            group = f'"," space {items[index]} {rule}'.strip()
            rule = f"({group})" if index < least else f"({group})?"
        body = f'"[" space {items[0]} {rule} "]" space'
        return self._add_rule(name or "root", body)


@lru_cache(maxsize=64)
def _gbnf(schema_json: str) -> str:
    converter = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(json.loads(schema_json), "schema")
    converter.visit(schema, "")
    return converter.format_grammar()


def grammar_for_schema(schema: dict[str, Any]) -> LlamaGrammar:
    """A grammar admitting exactly the JSON documents ``schema`` describes (cached)."""
    return LlamaGrammar.from_string(_gbnf(json.dumps(schema)), verbose=False)
