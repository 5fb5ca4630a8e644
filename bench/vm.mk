# bench/vm: the headline benchmark (`make vm` runs `./bench/vm --perf` as root),
# from bench/vm*.c. It links libhakmem.a statically, so the library's USDT probes
# (sdt_hakmem:flush_begin...) are in the bench/vm binary itself, next to its own
# scenario probes.

VM_SRCS  := $(wildcard bench/vm*.c)
VM_OBJS  := $(VM_SRCS:%.c=$(BUILD)/%.o)
HAK_OBJS += $(VM_OBJS)

$(VM_OBJS): $(BUILD)/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(HAK_CC) -Ilib -Iio -Iperf -c $< -o $@

bench/vm: $(VM_OBJS) $(PERF_OBJS) $(LIBA)
	$(HAK_LD) -o $@ $(VM_OBJS) $(PERF_OBJS) $(HAK_LINK) $(PERF_LIBS) -lm

ifeq ($(SAN),)
all: bench/vm
endif
CLEAN_EXTRA += bench/vm
TEST_EXTRA_DEPS += bench/vm
