# Tests: every tests/test_*.c is one feature and defines `Suite *test_NAME_suite(void)`
# (NAME = file name without test_ and .c). One Check runner links them all with
# libhakmem.a (so the runner itself allocates with hakmem) and the perf module.
# tests/prog_*.c are small programs the tests exec with their own environment.

TEST_SRCS  := $(wildcard tests/test_*.c)
TEST_OBJS  := $(TEST_SRCS:%.c=$(BUILD)/%.o)
TEST_PROGS := $(patsubst tests/prog_%.c,tests/bin/prog_%,$(wildcard tests/prog_*.c))
ifeq ($(SAN),1)
  TEST_RUNNER := $(BUILD)/tests/bin/check_hakmem  # programs stay the normal tests/bin/prog_*
else
  TEST_RUNNER := tests/bin/check_hakmem
endif
CHECK_CFLAGS = $(shell pkg-config --cflags check)
CHECK_LIBS   = $(shell pkg-config --libs check)

$(BUILD)/tests/suites.h: $(TEST_SRCS) tests/tests.mk
	@mkdir -p $(dir $@)
	@for f in $(sort $(TEST_SRCS)); do n=$$(basename $$f .c); echo "X($$n)"; done > $@

$(BUILD)/tests/%.o: tests/%.c $(LIB_HDRS) $(wildcard tests/*.h) $(wildcard perf/*.h) | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Ilib -Iio -Iperf -Itests -I$(BUILD)/tests -c $< -o $@

$(BUILD)/tests/main.o: tests/main.c $(BUILD)/tests/suites.h

$(TEST_RUNNER): $(BUILD)/tests/main.o $(TEST_OBJS) $(PERF_OBJS) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/tests/main.o $(TEST_OBJS) $(PERF_OBJS) $(HAK_LINK) $(PERF_LIBS) $(CHECK_LIBS)

tests/bin/prog_%: tests/prog_%.c $(LIBA) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ilib -o $@ $< $(HAK_LINK)

TEST_DEPS := $(TEST_RUNNER) $(TEST_PROGS) $(LIBSO) $(TEST_EXTRA_DEPS)

# Runs every suite; CK_RUN_SUITE=name / CK_RUN_CASE=name narrow it down.
check: all $(TEST_DEPS)
	@tests/run.sh $(TEST_RUNNER)

# The same suites under ASan/UBSan: the library is built without the malloc
# family (ASan owns malloc), tests use the hak_ API, LD_PRELOAD tests skip.
check-san: all $(TEST_PROGS) $(LIBSO) $(TEST_EXTRA_DEPS)
	$(MAKE) SAN=1 build-san/tests/bin/check_hakmem
	@HAK_SANITIZE=1 ASAN_OPTIONS=detect_leaks=0 tests/run.sh build-san/tests/bin/check_hakmem

CLEAN_EXTRA += tests/bin
