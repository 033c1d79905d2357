"""The `bertcpu` command, one module per subcommand.

    bertcpu embed --model M [TEXT ... | --input FILE|-] [--field NAME] [--output FILE] [--sparse]
    bertcpu tokenize --model M TEXT ...
    bertcpu inspect [M | config.json | --config bert-base]
    bertcpu bench [--model M] [--batch B] [--seq S] [--threads T] [--compare torch,...]
                  [--json FILE]
    bertcpu rerank M --query Q --docs FILE|- [--top-k K]
    bertcpu classify M [TEXT ... | --input FILE|-] [--top-k K] [--aggregation STRATEGY]
    bertcpu serve MODEL [--host H] [--port P] [--dtype D] [--threads T] [--max-batch-tokens N]
                  [--max-client-batch-size N] [--max-concurrent-requests N] [--auto-truncate]
                  [--api-key KEY] [--served-model-name NAME] [--log-level L]

Each command module has add_command(commands), which adds its subparser with handler=run.
Mistakes a user can make (a missing model, an unreadable file, a bad field name, a bad option)
end the command with one line on stderr and exit status 1 (2 for a malformed command line), never
with a traceback.
"""
import os
import sys

from .. import __version__
from . import bench, classify, embed, inspect, rerank, serve, tokenize
from ._common import (EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_INTERRUPTED, Parser, UserError)

COMMANDS = (embed, tokenize, inspect, bench, rerank, classify, serve)


def build_parser():
    parser = Parser(prog="bertcpu", description="Fast, faithful CPU inference for BERT encoders.")
    parser.add_argument("--version", action="version", version=f"bertcpu {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for command in COMMANDS:
        command.add_command(commands)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except UserError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(_describe_os_error(error))
    except ValueError as error:
        # The library's ValueErrors describe bad input (a broken config, an unreadable file).
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    return 0


def _fail(message, status=EXIT_ERROR):
    if isinstance(sys.exc_info()[1], BrokenPipeError):
        # The reader of our output went away (e.g. `| head`): nothing left to tell it.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    first_line = " ".join(message.split())
    sys.stderr.write(f"bertcpu: error: {first_line}\n")
    sys.stderr.flush()
    return status


def _silence_stdout():
    # Point stdout at /dev/null so the interpreter's final flush does not raise again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _describe_os_error(error):
    if isinstance(error, BrokenPipeError):
        return "broken pipe"
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return error.strerror or str(error)
