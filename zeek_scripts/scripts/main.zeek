##! Raise zeek-ml's verdicts as notices inside Zeek.
##!
##! zeek-ml scores finished connections with a learned model outside Zeek.
##! This script brings its verdicts back in, one of two ways
##! (:zeek:see:`ZeekML::transport`):
##!
##! * ``VERDICT_FILE``: follow the verdict file that ``zeek-ml watch
##!   --verdicts FILE`` appends to, with the Input framework in STREAM mode.
##! * ``BROKER``: publish every finished connection to ``zeek-ml broker`` and
##!   handle the verdict events it publishes back.
##!
##! Either way a verdict becomes a :zeek:see:`ZeekML::Suspicious_Connection`
##! notice, so suppression, notice policy hooks and cluster handling apply as
##! to any other notice. In a cluster the manager raises the notices. The record types below are shared with zeek-ml
##! (``zeek_ml/verdicts.py``); a test there keeps the two identical.

@load base/frameworks/notice
@load base/frameworks/input
@load base/frameworks/broker
@load base/frameworks/cluster
@load base/protocols/conn

module ZeekML;

export {
	redef enum Notice::Type += {
		## zeek-ml's model scored a finished connection at or above its
		## threshold. The notice's ``sub`` holds the score; the
		## ``zeek_ml.*`` columns hold the score, the threshold, the model
		## and the attack family when the model names one.
		Suspicious_Connection,
	};

	## How verdicts come back into Zeek.
	type Transport: enum {
		## Follow the verdict file that ``zeek-ml watch --verdicts``
		## appends to (Input framework, STREAM mode).
		VERDICT_FILE,
		## Publish finished connections to ``zeek-ml broker`` and handle
		## the verdict events it sends back.
		BROKER,
	};

	## The transport in use.
	const transport = VERDICT_FILE &redef;

	## The verdict file written by ``zeek-ml watch --verdicts``. A relative
	## path is relative to Zeek's working directory. The file may appear
	## after Zeek starts; it is read from its start, then followed.
	const verdict_file = "zeek-ml-verdicts.log" &redef;

	## Where ``zeek-ml broker --listen`` listens (BROKER transport).
	const broker_host = "127.0.0.1" &redef;

	## The port ``zeek-ml broker --listen`` listens on (BROKER transport).
	const broker_port = 9966/tcp &redef;

	## How often Broker retries a lost or failed peering with
	## ``zeek-ml broker``.
	const broker_retry = 5sec &redef;

	## The topic finished connections are published on.
	const conn_topic = "zeek/ml/conn" &redef;

	## The topic ``zeek-ml broker`` publishes verdicts on.
	const verdict_topic = "zeek/ml/verdict" &redef;

	## Verdicts scoring below this raise no notice. zeek-ml sends only
	## connections at or above its own threshold; raise this to be
	## stricter inside Zeek.
	option score_threshold = 0.0;

	## How long further verdicts for the same originator are suppressed
	## after a notice (the notice's ``$identifier`` is the originator).
	option suppress_for = 1hr;

	## A finished connection, as published to ``zeek-ml broker``: conn.log's
	## standard fields with the connection's endpoints flattened.
	type FinishedConn: record {
		## Time of the connection's first packet.
		ts: time;
		## The connection's unique ID.
		uid: string;
		## The originator's address.
		orig_h: addr;
		## The originator's port.
		orig_p: port;
		## The responder's address.
		resp_h: addr;
		## The responder's port.
		resp_p: port;
		## The transport protocol.
		proto: transport_proto;
		## The application protocol(s) Zeek identified.
		service: string &optional;
		## How long the connection lasted.
		duration: interval &optional;
		## Payload bytes the originator sent.
		orig_bytes: count &optional;
		## Payload bytes the responder sent.
		resp_bytes: count &optional;
		## The connection state (``SF``, ``S0``, ``REJ``, ...).
		conn_state: string &optional;
		## Whether the originator is local (:zeek:see:`Site::local_nets`).
		local_orig: bool &optional;
		## Whether the responder is local.
		local_resp: bool &optional;
		## Bytes missed in content gaps.
		missed_bytes: count &optional;
		## The connection's state history.
		history: string &optional;
		## Packets the originator sent.
		orig_pkts: count &optional;
		## IP-level bytes the originator sent.
		orig_ip_bytes: count &optional;
		## Packets the responder sent.
		resp_pkts: count &optional;
		## IP-level bytes the responder sent.
		resp_ip_bytes: count &optional;
		## UIDs of tunnels the connection was carried in.
		tunnel_parents: set[string] &optional;
	};

	## One verdict from zeek-ml: a line of the verdict file, or the
	## argument of :zeek:see:`ZeekML::verdict`.
	type Verdict: record {
		## Time of the connection's first packet.
		ts: time;
		## The connection's unique ID.
		uid: string;
		## The originator's address.
		orig_h: addr;
		## The originator's port.
		orig_p: port;
		## The responder's address.
		resp_h: addr;
		## The responder's port.
		resp_p: port;
		## The model's probability that the connection is malicious.
		score: double;
		## The threshold the score crossed.
		threshold: double;
		## The model's name.
		model: string;
		## The model's version.
		model_version: string;
		## The attack family, when the model names one.
		family: string &optional;
		## The feature groups that drove the score, when the model names them.
		reasons: vector of string &optional;
		## A human-readable description of the notice: family, severity,
		## what the originator did, the score and why.
		msg: string;
		## The notice's details as words (``score=0.999 severity=high
		## family=PortScan n=120 ... model=conn-cnn-v2``).
		sub: string &optional;
		## How many connections the verdict stands for (an incident's size).
		n: count &optional;
		## ``low``, ``medium`` or ``high``.
		severity: string &optional;
		## ``inbound``, ``outbound``, ``internal`` or ``external``.
		direction: string &optional;
		## The incident's key (direction, family and the host it is about);
		## the notice's ``$identifier`` when set.
		incident: string &optional;
		## The incident's first connection.
		first_ts: time &optional;
		## The incident's last connection.
		last_ts: time &optional;
		## Distinct originators in the incident.
		srcs: count &optional;
		## Distinct responders in the incident.
		dsts: count &optional;
		## Distinct responder ports in the incident.
		ports: count &optional;
	};

	## zeek-ml's columns in notice.log (``zeek_ml.score``, ...).
	type NoticeInfo: record {
		## The model's probability that the connection is malicious.
		score: double &log;
		## The threshold the score crossed.
		threshold: double &log;
		## The model's name.
		model: string &log;
		## The model's version.
		model_version: string &log;
		## The attack family, when the model names one.
		family: string &log &optional;
		## The feature groups that drove the score, when the model names them.
		reasons: vector of string &log &optional;
		## ``low``, ``medium`` or ``high``.
		severity: string &log &optional;
		## ``inbound``, ``outbound``, ``internal`` or ``external``.
		direction: string &log &optional;
		## The incident's key.
		incident: string &log &optional;
		## The incident's first connection.
		first_ts: time &log &optional;
		## The incident's last connection.
		last_ts: time &log &optional;
		## Distinct originators in the incident.
		srcs: count &log &optional;
		## Distinct responders in the incident.
		dsts: count &log &optional;
		## Distinct responder ports in the incident.
		ports: count &log &optional;
	};

	## Published on :zeek:see:`ZeekML::conn_topic` for each finished
	## connection (BROKER transport).
	##
	## c: the connection.
	global conn_finished: event(c: FinishedConn);

	## Sent by ``zeek-ml broker`` for each connection it flags.
	##
	## v: the verdict.
	global verdict: event(v: Verdict);

	## Turns a conn.log record into what is published to zeek-ml.
	##
	## rec: the conn.log record.
	##
	## Returns: the connection as a :zeek:type:`ZeekML::FinishedConn`.
	global conn_from_log: function(rec: Conn::Info): FinishedConn;

	## Raises the notice for one verdict (both transports end here).
	##
	## v: the verdict.
	global raise_notice: function(v: Verdict);
}

redef record Notice::Info += {
	## zeek-ml's score, threshold, model and family, for its notices.
	zeek_ml: NoticeInfo &log &optional;
};

## The Input framework's event for each line of the verdict file.
global verdict_line: event(desc: Input::EventDescription, tpe: Input::Event,
    v: Verdict);

function conn_from_log(rec: Conn::Info): FinishedConn
	{
	local c = FinishedConn($ts=rec$ts, $uid=rec$uid, $orig_h=rec$id$orig_h,
	    $orig_p=rec$id$orig_p, $resp_h=rec$id$resp_h, $resp_p=rec$id$resp_p,
	    $proto=rec$proto);

	if ( rec?$service )
		c$service = rec$service;
	if ( rec?$duration )
		c$duration = rec$duration;
	if ( rec?$orig_bytes )
		c$orig_bytes = rec$orig_bytes;
	if ( rec?$resp_bytes )
		c$resp_bytes = rec$resp_bytes;
	if ( rec?$conn_state )
		c$conn_state = rec$conn_state;
	if ( rec?$local_orig )
		c$local_orig = rec$local_orig;
	if ( rec?$local_resp )
		c$local_resp = rec$local_resp;
	if ( rec?$missed_bytes )
		c$missed_bytes = rec$missed_bytes;
	if ( rec?$history )
		c$history = rec$history;
	if ( rec?$orig_pkts )
		c$orig_pkts = rec$orig_pkts;
	if ( rec?$orig_ip_bytes )
		c$orig_ip_bytes = rec$orig_ip_bytes;
	if ( rec?$resp_pkts )
		c$resp_pkts = rec$resp_pkts;
	if ( rec?$resp_ip_bytes )
		c$resp_ip_bytes = rec$resp_ip_bytes;
	if ( rec?$tunnel_parents )
		c$tunnel_parents = rec$tunnel_parents;

	return c;
	}

function raise_notice(v: Verdict)
	{
	if ( v$score < score_threshold )
		return;

	local info = NoticeInfo($score=v$score, $threshold=v$threshold, $model=v$model,
	    $model_version=v$model_version);

	if ( v?$family )
		info$family = v$family;
	if ( v?$reasons )
		info$reasons = v$reasons;
	if ( v?$severity )
		info$severity = v$severity;
	if ( v?$direction )
		info$direction = v$direction;
	if ( v?$incident )
		info$incident = v$incident;
	if ( v?$first_ts )
		info$first_ts = v$first_ts;
	if ( v?$last_ts )
		info$last_ts = v$last_ts;
	if ( v?$srcs )
		info$srcs = v$srcs;
	if ( v?$dsts )
		info$dsts = v$dsts;
	if ( v?$ports )
		info$ports = v$ports;

	local cid = conn_id($orig_h=v$orig_h, $orig_p=v$orig_p, $resp_h=v$resp_h,
	    $resp_p=v$resp_p);
	local n = Notice::Info($note=Suspicious_Connection, $msg=v$msg, $uid=v$uid,
	    $id=cid, $suppress_for=suppress_for, $zeek_ml=info);

	# When the activity happened (an incident's first connection), as in
	# zeek-ml's own notice log, not when Zeek read the verdict.
	n$ts = v$ts;
	n$sub = v?$sub ? v$sub : fmt("score=%.3f", v$score);
	n$identifier = v?$incident ? v$incident : cat(v$orig_h);
	if ( v?$n )
		n$n = v$n;

	NOTICE(n);
	}

event verdict_line(desc: Input::EventDescription, tpe: Input::Event, v: Verdict)
	{
	raise_notice(v);
	}

event ZeekML::verdict(v: Verdict)
	{
	raise_notice(v);
	}

event Conn::log_conn(rec: Conn::Info)
	{
	if ( transport == BROKER )
		Broker::publish(conn_topic, conn_finished, conn_from_log(rec));
	}

event zeek_init()
	{
	# In a cluster, verdicts become notices on the manager only; every node
	# that logs connections publishes them.
	local notices_here = ! Cluster::is_enabled()
	    || Cluster::local_node_type() == Cluster::MANAGER;

	if ( transport == VERDICT_FILE && notices_here )
		Input::add_event([$source=verdict_file, $name="zeek_ml_verdicts",
		    $fields=Verdict, $ev=verdict_line, $want_record=T,
		    $mode=Input::STREAM]);

	if ( transport == BROKER )
		{
		if ( notices_here )
			Broker::subscribe(verdict_topic);
		Broker::peer(broker_host, broker_port, broker_retry);
		}
	}
