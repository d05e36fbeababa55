"""`flir-stream`: one command with a subcommand per stage, plus `run` for all three."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from . import __version__, binding, config as configuration, logs

# subcommand -> (module with add_arguments(parser) and run(config, args) -> exit status, summary)
COMMANDS = {
    "capture": ("capture.app", "read Lepton frames (SPI, simulated, recorded file or image) "
                               "and publish them"),
    "encoder": ("encoder.app", "turn frames into coloured JPEG images with temperatures"),
    "server": ("server.app", "serve the viewer, websocket, MJPEG and snapshots over HTTP"),
    "run": ("flirstream.supervise", "run capture, encoder and server together and print the URL"),
}


class _Formatter(argparse.HelpFormatter):
    """Shows an option's default once: only where its help does not already say it, and not for
    options without one (None, [], False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, [], False) or default is argparse.SUPPRESS
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH",
                        help="server.conf to read (default: ./server.conf if it exists, "
                             "else the packaged default)")
    parser.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                        dest="overrides",
                        help="override one server.conf value, e.g. --set server.port=8081 "
                             "(repeatable)")
    parser.add_argument("--log-level", choices=logs.LEVELS, default="info",
                        help="how much to log (default: info)")


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flir-stream",
        description="Stream a FLIR Lepton thermal camera to web browsers: capture -> encoder -> "
                    "server, joined by ZeroMQ.")
    parser.add_argument("--version", action="version", version=f"flir-stream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=f"flir-stream {name}: {summary}.",
                           formatter_class=_Formatter)
        if name != only:
            continue  # its options are listed by `flir-stream NAME --help`
        _common(p)
        module = importlib.import_module(module_name)
        module.add_arguments(p)
        p.set_defaults(module=module)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the chosen stage's module: a stage never loads another stage's code.
    only = argv[0] if argv and argv[0] in COMMANDS else None
    if not argv:  # `flir-stream` alone: what it can do, on stderr, and status 2 (nothing was run)
        parser = build_parser()
        parser.print_help(sys.stderr)
        print("\nflir-stream: expected a command, e.g. flir-stream run", file=sys.stderr)
        return 2
    args = build_parser(only).parse_args(argv)
    logs.setup(args.command, args.log_level)
    try:
        cfg = configuration.load(args.config, args.overrides)
    except configuration.ConfigError as exc:
        print(f"flir-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    try:
        if cfg.endpoints.curve_key and args.command != "run":  # run's children do it themselves
            from . import links
            links.configure(cfg)
        return int(args.module.run(cfg, args) or 0)
    except configuration.ConfigError as exc:  # a stage's own check of a setting
        print(f"flir-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except binding.StageFault as exc:  # e.g. a restarted stage's port stayed taken
        logging.getLogger(args.command).error("stopped: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception:
        logging.getLogger(args.command).exception("stopped by an unexpected error")
        return 1


def stage_main(stage: str) -> None:
    """Entry point of `python -m capture` etc."""
    sys.exit(main([stage, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
