# @TEST-DOC: A second verdict for the same originator within ZeekML::suppress_for raises no second notice.
#
# @TEST-EXEC: zeek -b $PACKAGE %INPUT >output 2>&1
# @TEST-EXEC: grep -q '^suppressed CSecond0000000000$' output
# @TEST-EXEC: test "$(zeek-cut uid < notice.log)" = "CFirst00000000000"

redef ZeekML::verdict_file = "no-such-file.log";

global second = ZeekML::Verdict($ts=double_to_time(1700000060.0),
    $uid="CSecond0000000000", $orig_h=10.0.0.5, $orig_p=49153/tcp,
    $resp_h=203.0.113.7, $resp_p=80/tcp, $score=0.99, $threshold=0.98,
    $model="conn-cnn-v1", $model_version="1", $msg="second");

event zeek_init()
	{
	ZeekML::raise_notice(ZeekML::Verdict($ts=double_to_time(1700000000.0),
	    $uid="CFirst00000000000", $orig_h=10.0.0.5, $orig_p=49152/tcp,
	    $resp_h=203.0.113.7, $resp_p=80/tcp, $score=0.99, $threshold=0.98,
	    $model="conn-cnn-v1", $model_version="1", $msg="first"));
	}

event Notice::begin_suppression(ts: time, suppress_for: interval,
    note: Notice::Type, identifier: string) &priority=-10
	{
	# Suppression for 10.0.0.5 is in place now: the same originator again.
	ZeekML::raise_notice(second);
	}

event Notice::suppressed(n: Notice::Info)
	{
	print fmt("suppressed %s", n$uid);
	}
