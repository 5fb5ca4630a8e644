# Tests: every tests/test_*.c is one feature and defines `Suite *test_NAME_suite(void)`
# (NAME = file name without test_ and .c). One Check runner links them all with
# libhakmem.a (so the runner itself allocates with hakmem) and the perf module.
# tests/prog_*.c are small programs the tests exec with their own environment.
# tests/README.md says what each suite checks and how to read a failure.

TEST_SRCS  := $(wildcard tests/test_*.c)
TEST_OBJS  := $(TEST_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/tests/main.o
PROG_SRCS  := $(wildcard tests/prog_*.c)
PROG_OBJS  := $(PROG_SRCS:%.c=$(BUILD)/%.o)
TEST_PROGS := $(PROG_SRCS:tests/%.c=tests/bin/%)
ifeq ($(SAN),)
  TEST_RUNNER := tests/bin/check_hakmem
  HAK_OBJS += $(TEST_OBJS) $(PROG_OBJS)
  all: $(TEST_RUNNER) $(TEST_PROGS)
else
  TEST_RUNNER := $(BUILD)/tests/bin/check_hakmem  # programs stay the normal tests/bin/prog_*
  HAK_OBJS += $(TEST_OBJS)
  all: $(TEST_RUNNER)
endif
CHECK_CFLAGS = $(shell pkg-config --cflags check)
CHECK_LIBS   = $(shell pkg-config --libs check)

# The list of suites, X(test_NAME) per line: rewritten when a test file is added or removed.
SUITES := $(patsubst tests/%.c,X(%),$(sort $(TEST_SRCS)))
ifneq ($(SUITES),$(strip $(file <$(BUILD)/tests/suites.h)))
$(BUILD)/tests/suites.h: FORCE
endif
$(BUILD)/tests/suites.h:
	@mkdir -p $(dir $@)
	@printf '%s\n' $(SUITES:%='%') > $@

$(TEST_OBJS): $(BUILD)/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(HAK_CC) $(CHECK_CFLAGS) -Ilib -Iio -Iperf -Itests -I$(BUILD)/tests -c $< -o $@

$(BUILD)/tests/main.o: $(BUILD)/tests/suites.h

$(TEST_RUNNER): $(TEST_OBJS) $(PERF_OBJS) $(LIBA)
	@mkdir -p $(dir $@)
	$(HAK_LD) -o $@ $(TEST_OBJS) $(PERF_OBJS) $(HAK_LINK) $(PERF_LIBS) $(CHECK_LIBS)

$(PROG_OBJS): $(BUILD)/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(HAK_CC) -Ilib -c $< -o $@

$(TEST_PROGS): tests/bin/%: $(BUILD)/tests/%.o $(LIBA)
	@mkdir -p $(dir $@)
	$(HAK_LD) -o $@ $< $(HAK_LINK)

TEST_DEPS := $(TEST_RUNNER) $(TEST_PROGS) $(LIBSO) $(TEST_EXTRA_DEPS)

# Runs every suite; CK_RUN_SUITE=name / CK_RUN_CASE=name narrow it down.
check: all $(TEST_DEPS)
	@tests/run.sh $(TEST_RUNNER)

# check-san and check-tsan: the same suites against a sanitizer build of the library
# and the runner (SAN=..., in build-san/ or build-tsan/), next to the normal build
# that the LD_PRELOAD and bench tests use. The library has no malloc family there
# (the sanitizer owns malloc), the tests use the hak_ API, LD_PRELOAD tests skip.
check-san: all $(TEST_DEPS)
	$(MAKE) SAN=address build-san/tests/bin/check_hakmem
	@HAK_SANITIZE=1 ASAN_OPTIONS=detect_leaks=0 tests/run.sh build-san/tests/bin/check_hakmem

# A report makes the test (a Check fork child) exit with 66, which Check counts as an
# error. Reports also go to build-tsan/tsan.PID, so that one in any process fails the
# target; they are printed at the end, then one line per distinct report.
# die_after_fork=0: the fork suite forks while threads run, on purpose.
# TSAN_OPTIONS from the environment come last and win (e.g. halt_on_error=0).
HAK_TSAN_OPTIONS := halt_on_error=1 exitcode=66 second_deadlock_stack=1 die_after_fork=0 \
                    log_path=$(CURDIR)/build-tsan/tsan
check-tsan: all $(TEST_DEPS)
	$(MAKE) SAN=thread build-tsan/tests/bin/check_hakmem
	@rm -f build-tsan/tsan.*
	@HAK_SANITIZE=1 TSAN_OPTIONS="$(HAK_TSAN_OPTIONS) $$TSAN_OPTIONS" \
	  tests/run.sh build-tsan/tests/bin/check_hakmem; rc=$$?; \
	  if ls build-tsan/tsan.* >/dev/null 2>&1; then \
	    cat build-tsan/tsan.*; echo; echo "ThreadSanitizer reports (build-tsan/tsan.*):"; \
	    grep -h '^SUMMARY: ThreadSanitizer' build-tsan/tsan.* | sort | uniq -c; rc=1; \
	  fi; exit $$rc

CLEAN_EXTRA += tests/bin
.PHONY: FORCE
