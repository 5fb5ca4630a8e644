#!/usr/bin/env bash
# Checks the relative links of the repository's Markdown files: the file or
# directory a link names must exist, and a #anchor must name a heading of the
# target (GitHub's anchors: lower case, punctuation dropped, spaces to '-').
# Links in code blocks and code spans are not links; http(s)/mailto are skipped.
#   scripts/check-links.sh [FILE.md ...]   default: every *.md git knows (not ignored)
# Prints one line per broken link, file:line: target: why; exit 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then
	files=("$@")
else
	mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.md' 2>/dev/null |
		sort -u)
	[ ${#files[@]} -gt 0 ] || mapfile -t files < <(find . -name '*.md' -not -path './.git/*' \
		-not -path './.deps/*' -not -path './build*' | sed 's|^\./||' | sort)
fi

# file line target, one per link, outside fenced code blocks and code spans.
links() {
	awk '
		/^[ \t]*(```|~~~)/ { fence = !fence; next }
		fence { next }
		{
			line = $0
			gsub(/`[^`]*`/, "", line)
			while (match(line, /\]\([^)[:space:]]+( "[^"]*")?\)/)) {
				t = substr(line, RSTART + 2, RLENGTH - 3)
				sub(/ ".*$/, "", t)
				print FILENAME "\t" FNR "\t" t
				line = substr(line, RSTART + RLENGTH)
			}
		}' "$1"
}

# The anchors of a Markdown file's headings, one per line.
anchors() {
	awk '
		/^[ \t]*(```|~~~)/ { fence = !fence; next }
		fence { next }
		/^#+[ \t]/ {
			h = $0
			sub(/^#+[ \t]+/, "", h); sub(/[ \t#]*$/, "", h)
			h = tolower(h)
			gsub(/[^a-z0-9 _-]/, "", h)
			gsub(/ /, "-", h)
			n = seen[h]++
			print (n ? h "-" n : h)
		}' "$1"
}

bad=0
for f in "${files[@]}"; do
	[ -f "$f" ] || { echo "$f: no such file" >&2; bad=1; continue; }
	dir=$(dirname "$f")
	while IFS=$'\t' read -r file line target; do
		case "$target" in
		http://* | https://* | mailto:*) continue ;;
		esac
		path=${target%%#*}
		anchor=
		[[ $target == *"#"* ]] && anchor=${target#*#}
		if [ -z "$path" ]; then
			dest=$f
		else
			dest=$dir/$path
		fi
		if [ ! -e "$dest" ]; then
			echo "$file:$line: $target: $path does not exist"
			bad=1
			continue
		fi
		if [ -n "$anchor" ]; then
			if [ -d "$dest" ] || [[ $dest != *.md ]]; then
				echo "$file:$line: $target: an anchor into a file that is not Markdown"
				bad=1
			elif ! anchors "$dest" | grep -qxF -- "$anchor"; then
				echo "$file:$line: $target: no heading #$anchor in $dest"
				bad=1
			fi
		fi
	done < <(links "$f")
done
[ $bad = 0 ] && echo "check-links: ${#files[@]} files, every relative link resolves"
exit $bad
