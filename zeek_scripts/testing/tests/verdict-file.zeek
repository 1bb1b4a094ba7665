# @TEST-DOC: Each line of the verdict file becomes a ZeekML::Suspicious_Connection notice with zeek-ml's columns.
#
# @TEST-EXEC: cp $FILES/verdicts.log zeek-ml-verdicts.log
# @TEST-EXEC: zeek -b $PACKAGE %INPUT >output 2>&1
# @TEST-EXEC: zeek-cut note uid src p zeek_ml.model < notice.log > notices.txt
# @TEST-EXEC: test "$(grep -c '^ZeekML::Suspicious_Connection' notices.txt)" = 3
# @TEST-EXEC: grep -q '^ZeekML::Suspicious_Connection	CEL3aLvvNGvO6Ecoa	193.201.9.232	3933	conn-cnn-v2$' notices.txt
# @TEST-EXEC: grep -q '^ZeekML::Suspicious_Connection	C7kLhX22APK3NRYqG6	fe80::5dd3:6bb3:7720:1e83	5355	conn-cnn-v2$' notices.txt
# @TEST-EXEC: grep -q '^ZeekML::Suspicious_Connection	Cu9rRfmZywqa3Wilj	192.168.1.115	1177	conn-cnn-v2$' notices.txt
# @TEST-EXEC: zeek-cut sub zeek_ml.score zeek_ml.threshold < notice.log | grep -q '^score=1.000 severity=high family=C&C model=conn-cnn-v2	0.999675	0.999429$'
# @TEST-EXEC: grep -q '^#fields.*	zeek_ml.score	zeek_ml.threshold	zeek_ml.model	zeek_ml.model_version	zeek_ml.family	zeek_ml.reasons	zeek_ml.severity	zeek_ml.direction	zeek_ml.incident	zeek_ml.first_ts	zeek_ml.last_ts	zeek_ml.srcs	zeek_ml.dsts	zeek_ml.ports$' notice.log

redef exit_only_after_terminate = T;

global logged = 0;

# STREAM mode never ends its input: stop once the file's three verdicts are notices.
event Notice::log_notice(rec: Notice::Info)
	{
	if ( ++logged == 3 )
		terminate();
	}

event give_up()
	{
	terminate();
	}

event zeek_init()
	{
	schedule 60sec { give_up() };
	}
