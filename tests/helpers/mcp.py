"""`localrag mcp` driven by the MCP SDK's own stdio client, from synchronous tests.

The client is async (anyio); a blocking portal runs its event loop in a thread, so one server
process can stay up across a module's tests while each test calls tools plainly.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, Tool

LIMIT = 120.0  # the longest any request may take (a loaded, busy two-core box)


def localrag_mcp(*args: str) -> list[str]:
    return [sys.executable, "-m", "localrag", "mcp", *args]


class McpClient:
    """A server process started by `stdio_client` and an initialized `ClientSession` on it.

    `errors` collects what the transport could not parse: anything on the server's stdout
    that is not a JSON-RPC message. The server's stderr goes to `errlog`.
    """

    def __init__(
        self, argv: Sequence[str], env: dict[str, str], errlog: Path, cwd: Path | None = None
    ) -> None:
        self.params = StdioServerParameters(command=argv[0], args=list(argv[1:]), env=env, cwd=cwd)
        self.errlog = errlog
        self.errors: list[Exception] = []
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None
        self.session: ClientSession | None = None

    def __enter__(self) -> McpClient:
        try:
            self._portal = self._stack.enter_context(start_blocking_portal())
            self.session = self._stack.enter_context(
                self._portal.wrap_async_context_manager(self._connect())
            )
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[ClientSession]:
        with self.errlog.open("w") as errlog:
            async with (
                stdio_client(self.params, errlog=errlog) as (read, write),
                ClientSession(
                    read, write, read_timeout_seconds=LIMIT, message_handler=self._on_message
                ) as session,
            ):
                await session.initialize()
                yield session

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.errors.append(message)

    def list_tools(self) -> list[Tool]:
        assert self._portal is not None and self.session is not None
        return self._portal.call(self.session.list_tools).tools

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
        assert self._portal is not None and self.session is not None
        session = self.session

        async def call() -> CallToolResult:
            return await session.call_tool(name, arguments or {})

        return self._portal.call(call)

    def data(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """A tool's structured result, checked to be a success and to match its text form."""
        result = self.call(name, arguments)
        assert not result.is_error, f"{name} failed: {result.content}\n{self.stderr()}"
        data = result.structured_content
        assert isinstance(data, dict)
        # Clients that read only text content get the same JSON.
        assert json.loads(result.content[0].text) == data  # type: ignore[union-attr]
        return data

    def until(
        self,
        name: str,
        done: Callable[[dict[str, Any]], bool],
        arguments: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call a tool every tenth of a second until `done` holds for its result (at most
        LIMIT seconds): for what the server does in the background."""
        deadline = time.monotonic() + LIMIT
        while True:
            data = self.data(name, arguments)
            if done(data):
                return data
            assert time.monotonic() < deadline, f"{name} never got there: {data}\n{self.stderr()}"
            time.sleep(0.1)

    def error(self, name: str, arguments: dict[str, Any] | None = None) -> str:
        """The text of a tool call that must fail."""
        result = self.call(name, arguments)
        assert result.is_error, f"{name} succeeded: {result.structured_content}"
        return " ".join(getattr(block, "text", "") for block in result.content)

    def stderr(self) -> str:
        return self.errlog.read_text(errors="replace") if self.errlog.exists() else ""
