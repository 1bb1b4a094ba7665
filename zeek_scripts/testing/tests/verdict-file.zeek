# @TEST-DOC: Each line of the verdict file becomes a ZeekML::Suspicious_Connection notice with zeek-ml's columns.
#
# @TEST-EXEC: cp $FILES/verdicts.log zeek-ml-verdicts.log
# @TEST-EXEC: zeek -b $PACKAGE %INPUT >output 2>&1
# @TEST-EXEC: zeek-cut note uid src p zeek_ml.model < notice.log > notices.txt
# @TEST-EXEC: test "$(grep -c '^ZeekML::Suspicious_Connection' notices.txt)" = 3
# @TEST-EXEC: grep -q '^ZeekML::Suspicious_Connection	Cxl7TP23vZQ4RolkJf	10.0.2.112	80	conn-cnn-v1$' notices.txt
# @TEST-EXEC: grep -q '^ZeekML::Suspicious_Connection	CIHAbb28smxUBNvwmd	192.168.1.115	1177	conn-cnn-v1$' notices.txt
# @TEST-EXEC: grep -q '^ZeekML::Suspicious_Connection	CxjsUB3iFhTgLyi5y1	192.168.33.10	80	conn-cnn-v1$' notices.txt
# @TEST-EXEC: zeek-cut sub zeek_ml.score zeek_ml.threshold < notice.log | grep -q '^score=0.999	0.998921	0.983187$'
# @TEST-EXEC: grep -q '^#fields.*	zeek_ml.score	zeek_ml.threshold	zeek_ml.model	zeek_ml.model_version	zeek_ml.family	zeek_ml.reasons' notice.log

redef exit_only_after_terminate = T;

event Input::end_of_data(name: string, source: string)
	{
	if ( name == "zeek_ml_verdicts" )
		terminate();
	}
