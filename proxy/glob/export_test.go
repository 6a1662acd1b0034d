package glob

// For the tests of package glob_test, which start a redis-server.

var RedisMatch = redisMatch

type Case struct {
	Pattern, S string
	Want       bool
}

func Cases() []Case {
	var out []Case
	for _, tc := range matchCases {
		out = append(out, Case{tc.pattern, tc.s, tc.want})
	}
	return out
}
