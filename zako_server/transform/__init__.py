"""The transform stage: ES modules, TypeScript, TSX and JSX made runnable by the workers.

It runs in a few processes of its own (the server's TransformPool, transforms.py), each
holding one V8 isolate with sucrase and es-module-lexer loaded (bundle.py, transformer.js).
Nothing here touches a task's isolate: a file is transformed once per server, by content
digest, and the worker only receives the result.
"""

# Extensions the stage handles; anything else goes to the worker untouched.
EXTENSIONS = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".tsx", ".jsx")
