# perf/: the perf-events module (hperf) on libperf, as built by scripts/setup.sh
# into .deps/libperf and found through pkg-config. GNU make 4.3 does not pass
# exported variables to $(shell), so PKG_CONFIG_PATH is given explicitly.
# Defines PERF_OBJS and PERF_LIBS for the programs that link the module.

PERF_SRCS   := $(wildcard perf/*.c)
PERF_OBJS   := $(PERF_SRCS:%.c=$(BUILD)/%.o)
PERF_CFLAGS  = $(shell PKG_CONFIG_PATH="$(PKG_CONFIG_PATH)" pkg-config --cflags libperf)
PERF_LIBS    = $(shell PKG_CONFIG_PATH="$(PKG_CONFIG_PATH)" pkg-config --libs libperf) -lpthread
HAK_OBJS    += $(PERF_OBJS)

$(PERF_OBJS): $(BUILD)/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(HAK_CC) $(PERF_CFLAGS) -Iperf -c $< -o $@
