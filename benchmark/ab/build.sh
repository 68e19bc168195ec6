# build.sh, sourced by ab.sh and heavy.sh with old and new set to two git
# revisions: builds the server suite's binary at each, as $work/sb-old and
# $work/sb-new, in a temporary directory $work removed on exit, with the
# reference prepared in benchmark/.ref; sets repo and work.
repo=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"; git -C "$repo" worktree prune' EXIT
(cd "$repo/benchmark" && go run ./cmd/refprep >/dev/null) # the reference, in benchmark/.ref
for side in old new; do
	rev=${!side}
	git -C "$repo" worktree add -q --detach "$work/$side" "$rev"
	cp -r "$repo/benchmark/.ref" "$work/$side/benchmark/"
	(cd "$work/$side/benchmark" && go build -o "$work/sb-$side" ./internal/cmd/serverbench)
	git -C "$repo" worktree remove --force "$work/$side"
done
