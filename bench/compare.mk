# The scenario suite: bench/scenarios (one binary, plain malloc API, NOT linked
# with hakmem so every allocator runs it through LD_PRELOAD) and the runner
# bench/compare. `make bench-compare` runs the full suite (< 10 min) and
# writes bench/out/compare.csv and bench/out/compare.png.

SCEN_SRCS := bench/scenarios.c bench/scen_common.c bench/scen_json.c bench/scen_mir.c \
             bench/scen_vm.c bench/scen_mixed.c bench/scen_churn.c bench/scen_prodcons.c \
             bench/scen_falseshare.c bench/scen_largechurn.c bench/scen_kvserver.c \
             bench/scen_phases.c bench/scen_sampler.c
SCEN_OBJS := $(SCEN_SRCS:%.c=$(BUILD)/%.o)

all: bench/scenarios

# Plain CFLAGS: nothing from lib/ (only the C library's malloc API), and never
# a sanitizer: ASan would replace the very malloc LD_PRELOAD is meant to choose.
SCEN_CFLAGS := $(filter-out -fsanitize=% -DHAK_SANITIZE=1,$(CFLAGS))
SCEN_LDFLAGS := $(filter-out -fsanitize=%,$(LDFLAGS))

$(BUILD)/bench/scen%.o: bench/scen%.c bench/scen_common.h
	@mkdir -p $(dir $@)
	$(CC) $(SCEN_CFLAGS) -c $< -o $@

bench/scenarios: $(SCEN_OBJS)
	$(CC) $(SCEN_LDFLAGS) -pthread -o $@ $^

# The Check test runs `bench/compare --smoke`: it needs the binary built.
TEST_EXTRA_DEPS += bench/scenarios

.PHONY: bench-compare bench-compare-quick
bench-compare: bench/scenarios $(LIBSO)
	@mkdir -p bench/out
	@# no pipe into tee: its status would hide a failed run (sh has no pipefail)
	bench/compare --csv bench/out/compare.csv --png bench/out/compare.png \
	  --raw bench/out/compare.raw > bench/out/compare.txt; rc=$$?; \
	  cat bench/out/compare.txt; exit $$rc

bench-compare-quick: bench/scenarios $(LIBSO)
	@mkdir -p bench/out
	bench/compare --quick --csv bench/out/compare-quick.csv --png bench/out/compare-quick.png

CLEAN_EXTRA += bench/scenarios bench/out
