#!/usr/bin/env python3
"""Keeps man/netsemd.8 and man/netsem.1 in step with the programs' --help.

Usage: man_pages_test.py NETSEMD NETSEM MAN_DIR

netsemd(8): every flag of `netsemd --help` appears in its OPTIONS section,
every [server] option of the help in its CONFIGURATION section and every
[cluster] key in its subsection on [cluster]. netsem(1): every global flag
appears in GLOBAL OPTIONS, every subcommand (local's too)
has a `.SS` section of its own, and each subcommand's flags appear in that
section. Both ways: a long flag the page names (outside EXAMPLES and SEE ALSO)
that the program does not know fails too, so a removed or renamed flag cannot
linger. Both pages must render without a groff warning. Each failure says
what to add or remove, and where.
"""
import re
import subprocess
import sys


def run_help(argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
    return result.stdout


def block(help_text, title):
    """The lines of the help block starting after `title` (e.g. 'Options:'),
    up to the next blank line or unindented line."""
    lines = help_text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == title:
            out = []
            for rest in lines[i + 1:]:
                if not rest.startswith("  "):
                    break
                out.append(rest)
            return out
    return []


def flags(help_text):
    """The flags of the help's Options block: '-t,-w,--timeout,--wait' gives all four."""
    found = []
    for line in block(help_text, "Options:"):
        match = re.match(r"\s+(-[^ ]+)", line)
        if match:
            found.extend(f for f in match.group(1).split(",") if f.startswith("-"))
    return found


def subcommands(help_text):
    return [re.match(r"\s+(\S+)", line).group(1) for line in block(help_text, "Subcommands:")
            if re.match(r"\s+\S", line)]


def plain(roff):
    """The page's source with font changes and escaped hyphens undone."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    text = text.replace("\\-", "-").replace("\\(aq", "'").replace("\\c", "")
    return text


def sections(text, macro):
    """{heading: body} for each `.SH` heading (with its `.SS` subsections) or
    each `.SS` heading (up to the next heading of either kind)."""
    out = {}
    heading = None
    for line in text.splitlines():
        match = re.match(r"\.(SH|SS) (.*)", line)
        if match and match.group(1) == macro:
            heading = match.group(2).strip('"')
            out.setdefault(heading, "")
            continue
        if match and macro == "SS":
            heading = None  # a .SH ends the last subsection
            continue
        if heading is not None:
            out[heading] += line + "\n"
    return out


def mentions(text, flag):
    return re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text) is not None


def long_flags_named(text):
    """Long flags the page names, outside EXAMPLES and SEE ALSO (where other
    programs' flags may appear)."""
    kept = "".join(body for heading, body in sections(text, "SH").items()
                   if heading not in ("EXAMPLES", "SEE ALSO"))
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", kept))


def check_render(path, problems):
    result = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", path],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0 or result.stderr.strip():
        problems.append(f"{path} does not render cleanly (groff -man -ww): {result.stderr.strip()}")


def check_netsemd(netsemd, page_path, problems):
    help_text = run_help([netsemd, "--help"])
    page = plain(open(page_path, encoding="utf-8").read())
    parts = sections(page, "SH")
    options = parts.get("OPTIONS", "")
    program_flags = flags(help_text)
    if "--config" not in program_flags:
        problems.append(f"netsemd --help lists no --config: the help's format changed? {help_text[:200]}")
    for flag in program_flags:
        if not mentions(options, flag):
            problems.append(f"{page_path}: OPTIONS does not describe {flag} (netsemd --help has it)")
    server_help, _, cluster_help = help_text.partition("\nSection [cluster]")
    keys = [m.group(1) for line in server_help.splitlines()
            if (m := re.match(r"  ([a-z][a-z0-9_]*) = ", line))]
    if "bind_port" not in keys:
        problems.append("netsemd --help lists no [server] option: the help's format changed?")
    cluster_keys = [m.group(1) for line in cluster_help.splitlines()
                    if (m := re.match(r"  ([a-z][a-z0-9_.<>]*)( = | \()", line))]
    if "election_timeout_ms" not in cluster_keys:
        problems.append("netsemd --help lists no [cluster] key: the help's format changed?")
    configuration = parts.get("CONFIGURATION", "")
    cluster = next((body for heading, body in sections(page, "SS").items() if "[cluster]" in heading), "")
    for key in keys:
        if not re.search(r"^\.B " + re.escape(key) + r"$", configuration, re.M):
            problems.append(f"{page_path}: CONFIGURATION has no `.B {key}` entry (netsemd --help lists [server] {key})")
    for key in cluster_keys:
        if not re.search(r"^\.B " + re.escape(key) + r"$", cluster, re.M):
            problems.append(f"{page_path}: no `.B {key}` entry in a `.SS` subsection named [cluster] "
                            f"(netsemd --help lists [cluster] {key})")
    for flag in sorted(long_flags_named(page) - set(program_flags)):
        problems.append(f"{page_path} names {flag}, which netsemd --help does not have")


def check_netsem(netsem, page_path, problems):
    help_text = run_help([netsem, "--help"])
    page = plain(open(page_path, encoding="utf-8").read())
    parts = sections(page, "SH")
    known = set(flags(help_text))
    for flag in flags(help_text):
        if not mentions(parts.get("GLOBAL OPTIONS", ""), flag):
            problems.append(f"{page_path}: GLOBAL OPTIONS does not describe {flag} (netsem --help has it)")
    subsections = sections(page, "SS")
    paths = [[name] for name in subcommands(help_text)]
    if len(paths) < 10:
        problems.append(f"netsem --help lists only {len(paths)} subcommands: the help's format changed?")
    while paths:
        path = paths.pop(0)
        sub_help = run_help([netsem, *path, "--help"])
        nested = subcommands(sub_help)
        paths.extend(path + [name] for name in nested)
        title = " ".join(path)
        if nested:
            continue  # a group (local): its own subcommands have the sections
        body = next((b for h, b in subsections.items() if h == title or h.startswith(title + " ")), None)
        if body is None:
            problems.append(f"{page_path}: no `.SS {title} ...` section for `netsem {title}`")
            continue
        heading = next(h for h in subsections if h == title or h.startswith(title + " "))
        for flag in flags(sub_help):
            known.add(flag)
            if flag in ("-h", "--help"):
                continue
            if not (mentions(body, flag) or mentions(heading, flag)):
                problems.append(f"{page_path}: section `{title}` does not describe {flag} (netsem {title} --help has it)")
    for flag in sorted(long_flags_named(page) - known):
        problems.append(f"{page_path} names {flag}, which no netsem --help has")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    netsemd, netsem, man_dir = sys.argv[1:]
    problems = []
    for page in ("netsemd.8", "netsem.1"):
        check_render(f"{man_dir}/{page}", problems)
    check_netsemd(netsemd, f"{man_dir}/netsemd.8", problems)
    check_netsem(netsem, f"{man_dir}/netsem.1", problems)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    print("man pages: in step with netsemd --help and netsem --help")


if __name__ == "__main__":
    main()
