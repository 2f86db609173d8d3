"""Every test gets its own run store: nothing ever touches the user's ~/.local/share.
And no child process a test started outlives it, whether the test passed or failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from foreman.testing import ScriptedModel
from processes import kill_leftovers

#: The fixtures of the books tests (fake billing providers, each store), defined beside
#: their audit helpers.
pytest_plugins = ["books_audit"]


@pytest.fixture(autouse=True)
def private_run_store(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREMAN_DB", str(tmp_path / "foreman-test.db"))


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """Kill any child started through tests/processes.py that is still running at teardown."""
    yield
    kill_leftovers()


@pytest.fixture(autouse=True)
def books_balance(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The ledger invariant, checked after every execution of every run in every test: a
    run's tokens, cost and call count, as returned and as stored, equal the sum of its
    ledger rows and its nested runs' (each row counted once, in the run that made the
    call). Runs through any store (memory, SQLite, a test's spy) and any outcome."""
    import foreman.engine.lifecycle as lifecycle
    import foreman.engine.orchestrator as orchestrator
    from foreman.ledger.books import Books

    checked: list[str] = []
    real = lifecycle.execute

    async def execute_and_check(owner, state, on_event):
        try:
            result = await real(owner, state, on_event)
        except Exception:
            await _check(owner.store, state.run_id, None)
            raise
        await _check(owner.store, state.run_id, result)
        return result

    async def _check(store, run_id, result) -> None:
        try:
            record = await store.get_run(run_id)
            calls = await store.list_calls(run_id=run_id, descendants=True)
        except Exception:
            return  # a store a test broke on purpose: nothing to read the books from
        books = Books.of(calls)
        assert (record.usage, record.calls) == (books.usage, books.calls), run_id
        assert record.cost_usd == pytest.approx(books.cost_usd), run_id
        if result is not None:
            assert (result.usage, result.calls) == (books.usage, books.calls), run_id
            assert result.cost_usd == pytest.approx(books.cost_usd), run_id
        checked.append(run_id)

    monkeypatch.setattr(orchestrator, "execute", execute_and_check)
    yield checked


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    """Make every model name resolve to one ScriptedModel; return a setter for its script.

    The names asked for are kept in ``use.loaded``, in order."""
    holder: dict[str, ScriptedModel] = {}

    def use(script) -> ScriptedModel:
        holder["model"] = ScriptedModel(script)
        return holder["model"]

    def load(name=None) -> ScriptedModel:
        use.loaded.append(name)
        return holder["model"]

    use.loaded = []
    monkeypatch.setattr("foreman.models.pool.load_model", load)
    monkeypatch.delenv("FOREMAN_MODEL", raising=False)
    return use
