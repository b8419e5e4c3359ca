"""LionAGI's ``Session`` and ``Branch`` on weft: many branches in one
durable session, split, default branch, mail, ``concat_messages``,
``to_df``, and ``branch.communicate(instruction)`` running a turn.

    from weft.lionagi import Session

    session = Session(plan=mount_plan, tools=[multiply])
    research = session.new_branch(system="You research.", name="research")
    answer = await research.communicate("What is 6 times 7?")
    df = session.to_df()

Branch operations are synchronous (as LionAGI's); ``communicate`` and
``asplit`` are awaitable. Python functions passed as ``tools`` become tools
with a JSON Schema from their type hints and docstring.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from . import _weft
from .tools import tool_spec

__all__ = ["Branch", "Session"]

BranchRef = Union["Branch", str]


def _ref(branch: BranchRef) -> str:
    return branch.id if isinstance(branch, Branch) else str(branch)


def _refs(branches: Optional[Union[BranchRef, Sequence[BranchRef]]]) -> Optional[List[str]]:
    if branches is None:
        return None
    if isinstance(branches, (Branch, str)):
        return [_ref(branches)]
    return [_ref(b) for b in branches]


class Branch:
    """One conversation of a session: ``id``, ``name``, ``messages``."""

    def __init__(self, session: "Session", data: Dict[str, Any]) -> None:
        self._session = session
        self._data = data

    @property
    def id(self) -> str:
        """The branch id."""
        return self._data["id"]

    @property
    def name(self) -> str:
        """The branch name (unique in the session)."""
        return self._data["name"]

    @property
    def metadata(self) -> Dict[str, Any]:
        """The branch's settings as weft stores them."""
        return {k: v for k, v in self._data.items() if k != "messages"}

    @property
    def messages(self) -> List[Dict[str, Any]]:
        """Its messages now (weft's message dicts, in order)."""
        return self._session._branch_data(self.id)["messages"]

    async def communicate(self, instruction: str, **_: Any) -> str:
        """Runs a turn on this branch; the answer text."""
        return await self._session._native.execute(instruction, self.id)

    def send(self, recipient: Optional[BranchRef] = None, category: str = "message", package: Any = None) -> Dict[str, Any]:
        """Mails ``package`` to ``recipient`` (None: every other branch);
        it waits there until collected."""
        to = _ref(recipient) if recipient is not None else None
        return self._session._b.send_mail(self.id, package, to, category)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Branch) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Branch(id={self.id!r}, name={self.name!r})"


class Session:
    """LionAGI's ``Session`` on a weft session.

    ``plan``: mount plan dict, plan file or profile (default: the stored
    session's, else ``base``); ``store``: a ``weft.Store`` (default
    ``weft.Store()``); ``session_id``: resume or create that session;
    ``tools``: Python functions the model may call."""

    def __init__(
        self,
        name: Optional[str] = None,
        *,
        plan: Any = None,
        store: Optional["_weft.Store"] = None,
        session_id: Optional[str] = None,
        tools: Optional[List[Callable[..., Any]]] = None,
    ) -> None:
        self.store = store if store is not None else _weft.Store()
        self._native = _weft.Session(
            self.store,
            plan,
            session_id=session_id,
            name=name,
            tools=[tool_spec(t) for t in (tools or [])],
        )
        self._b = self._native.blocking()
        self._b.initialize()

    @property
    def id(self) -> str:
        """The weft session id."""
        return self._native.id

    def _all(self) -> List[Dict[str, Any]]:
        return self._b.branches()

    def _branch_data(self, ref: str) -> Dict[str, Any]:
        for b in self._all():
            if b["id"] == ref:
                return b
        for b in self._all():
            if b["name"] == ref:
                return b
        raise _weft.NotFoundError(f"no branch {ref!r} in session {self.id}: session.branches lists them")

    @property
    def branches(self) -> List[Branch]:
        """The branches, in creation order."""
        return [Branch(self, b) for b in self._all()]

    @property
    def default_branch(self) -> Branch:
        """The branch turns run on when none is named."""
        for b in self._all():
            if b.get("is_default"):
                return Branch(self, b)
        raise _weft.NotFoundError(f"session {self.id} has no default branch")

    def get_branch(self, branch: BranchRef) -> Branch:
        """A branch by id or name."""
        return Branch(self, self._branch_data(_ref(branch)))

    def new_branch(
        self,
        system: Any = None,
        system_sender: Optional[str] = None,
        system_datetime: Union[bool, str, None] = None,
        user: Optional[str] = None,
        name: Optional[str] = None,
        imodel: Optional[str] = None,
        messages: Optional[List[Any]] = None,
        tools: Optional[List[str]] = None,
        **_: Any,
    ) -> Branch:
        """Creates a branch (``messages``: weft message dicts, or
        ``{"role", "content"}`` dicts, or strings; they are marked loaded)."""
        if isinstance(system, dict):
            system = system.get("content")
        spec: Dict[str, Any] = {"name": name or f"branch-{len(self._all()) + 1}"}
        for key, value in (
            ("system", system),
            ("system_sender", system_sender),
            ("system_datetime", system_datetime),
            ("user", user),
            ("model", imodel),
            ("messages", messages),
            ("tools", tools),
        ):
            if value is not None:
                spec[key] = value
        created = self._b.new_branch(spec)
        return self.get_branch(created["id"])

    def remove_branch(self, branch: BranchRef, delete: bool = False) -> None:
        """Removes a branch; removing the default makes another the default."""
        self._b.remove_branch(_ref(branch), delete)

    def change_default_branch(self, branch: BranchRef) -> None:
        """Makes ``branch`` the default."""
        self._b.change_default_branch(_ref(branch))

    def split(self, branch: BranchRef, name: Optional[str] = None) -> Branch:
        """A copy of ``branch``: the same messages marked as clones, its
        system message once."""
        created = self._b.split(_ref(branch), name)
        return self.get_branch(created["id"])

    async def asplit(self, branch: BranchRef, name: Optional[str] = None) -> Branch:
        """``split``, awaitable."""
        created = await self._native.split(_ref(branch), name)
        return self.get_branch(created["id"])

    def send(self, to_: Optional[Union[BranchRef, Sequence[BranchRef]]] = None) -> None:
        """Mail is delivered to the recipients' inboxes when a branch sends
        it (``branch.send``); this is kept for LionAGI's call shape and
        checks the named branches exist."""
        for ref in _refs(to_) or []:
            self._branch_data(ref)

    def collect(self, from_: Optional[Union[BranchRef, Sequence[BranchRef]]] = None) -> int:
        """Delivers waiting mail (from ``from_`` only, if given) into the
        recipients' conversations; how many were delivered."""
        senders = _refs(from_)
        if senders is None:
            return self._b.collect_mail(None, None)
        return sum(self._b.collect_mail(None, s) for s in senders)

    def collect_all(self) -> int:
        """Delivers all waiting mail."""
        return self.collect()

    async def acollect_send_all(self, receive_all: bool = False) -> int:
        """Delivers all waiting mail (awaitable)."""
        return await self._native.collect_mail(None, None)

    def concat_messages(
        self,
        branches: Optional[Union[BranchRef, Sequence[BranchRef]]] = None,
        exclude_clone: bool = False,
        exclude_load: bool = False,
    ) -> List[Dict[str, Any]]:
        """The messages of ``branches`` (default: all) in log order."""
        refs = _refs(branches)
        items = self._b.concat_messages(refs, exclude_clone, exclude_load)
        return [i["message"] for i in items]

    def to_rows(
        self,
        branches: Optional[Union[BranchRef, Sequence[BranchRef]]] = None,
        exclude_clone: bool = False,
        exclude_load: bool = False,
    ) -> List[Dict[str, Any]]:
        """The table export's rows (``created_at``, ``role``, ``content``,
        ``id``, ``sender``, ``recipient``, ``branch``, ``metadata``)."""
        refs = _refs(branches)
        return self._b.concat_messages(refs, exclude_clone, exclude_load, True)

    def to_df(
        self,
        branches: Optional[Union[BranchRef, Sequence[BranchRef]]] = None,
        exclude_clone: bool = False,
        exclude_load: bool = False,
    ) -> Any:
        """The messages as a pandas DataFrame (columns as ``to_rows``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Session.to_df() needs pandas: pip install pandas (or use to_rows())"
            ) from None
        columns = ["created_at", "role", "content", "id", "sender", "recipient", "branch", "metadata"]
        return pd.DataFrame(self.to_rows(branches, exclude_clone, exclude_load), columns=columns)

    def __iter__(self) -> Iterator[Branch]:
        return iter(self.branches)

    def __repr__(self) -> str:
        return f"Session(id={self.id!r})"
