# build.sh, sourced by ab.sh and heavy.sh with old and new set to two git
# revisions: builds the server suite's binary at each, as $work/sb-old and
# $work/sb-new, in a temporary directory $work removed on exit, with the
# reference prepared in benchmark/.ref; sets repo and work, and defines
# run_side. With NEW_PATCH set to a patch file, the new side is built with
# that patch applied (git apply), so that an experiment needs no commit.
repo=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"; git -C "$repo" worktree prune' EXIT
(cd "$repo/benchmark" && go run ./cmd/refprep >/dev/null) # the reference, in benchmark/.ref
for side in old new; do
	rev=${!side}
	git -C "$repo" worktree add -q --detach "$work/$side" "$rev"
	if [ "$side" = new ] && [ -n "${NEW_PATCH:-}" ]; then
		git -C "$work/$side" apply "$(realpath "$NEW_PATCH")"
	fi
	cp -r "$repo/benchmark/.ref" "$work/$side/benchmark/"
	(cd "$work/$side/benchmark" && go build -o "$work/sb-$side" ./internal/cmd/serverbench)
	git -C "$repo" worktree remove --force "$work/$side"
done

# run_side SIDE: calls the sourcing script's run with the binary and the
# implementation of SIDE: ref (the reference, in the new build), gonet (Go
# net, in the new build), old or new.
run_side() {
	case $1 in
	ref) run "$work/sb-new" ref ;;
	gonet) run "$work/sb-new" gonet ;;
	old) run "$work/sb-old" ours ;;
	new) run "$work/sb-new" ours ;;
	esac
}
