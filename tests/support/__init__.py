"""What the tests share, one definition each: the in-process stack and its settings
(`stack`), the stack of real processes for the fault tests and the integrity campaign
(`fault_stack`), each gateway's signed requests (`signing`) and the events it sends about an
order (`gateway_events`), what a test reads back (`outcomes`), the Razorpay API test server
(`razorpay_server`) and the dashboards' queries (`dashboards`). Fixtures stay in conftest.py."""
