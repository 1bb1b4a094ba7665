# @TEST-DOC: ZeekML::conn_from_log copies a conn.log record into what is published to zeek-ml broker, unset fields left unset.
#
# @TEST-EXEC: zeek -b $PACKAGE %INPUT >output 2>&1
# @TEST-EXEC: grep -q '^ok$' output

redef ZeekML::verdict_file = "no-such-file.log";

event zeek_init()
	{
	local rec = Conn::Info($ts=double_to_time(1700000000.5), $uid="CAbc",
	    $id=conn_id($orig_h=10.0.0.5, $orig_p=49152/tcp,
	    $resp_h=203.0.113.7, $resp_p=80/tcp), $proto=tcp, $service="http",
	    $duration=1.5sec, $orig_bytes=10, $conn_state="SF",
	    $history="ShADadFf");
	local c = ZeekML::conn_from_log(rec);

	if ( c$uid == "CAbc"
	    && c$orig_h == 10.0.0.5
	    && c$resp_p == 80/tcp
	    && c$proto == tcp
	    && c$service == "http"
	    && c$duration == 1.5sec
	    && c$orig_bytes == 10
	    && c$history == "ShADadFf"
	    && ! c?$resp_bytes
	    && ! c?$tunnel_parents )
		print "ok";
	else
		print c;
	}
