"""What the workflow tests share (tests/test_workflow_*.py)."""

from __future__ import annotations

import pytest

from receiver.workflow.common import WorkflowConfigError


def config_error(parse, doc: dict, mutate, source: str) -> str:
    """The message ``parse(doc, source)`` refuses ``doc`` with once
    ``mutate(doc)`` broke it (the test fails if it is accepted)."""
    mutate(doc)
    with pytest.raises(WorkflowConfigError) as e:
        parse(doc, source)
    return str(e.value)
