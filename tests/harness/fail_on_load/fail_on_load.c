// SPDX-License-Identifier: GPL-2.0-only
/*
 * A deliberately broken module for the harness self-test: its init fails,
 * so insmod fails, and the harness must fail the run and say so.
 */
#include <linux/module.h>
#include <linux/errno.h>

static int __init fail_on_load_init(void)
{
	pr_info("npu harness self-test: refusing to load\n");
	return -ENODEV;
}

static void __exit fail_on_load_exit(void)
{
}

module_init(fail_on_load_init);
module_exit(fail_on_load_exit);
MODULE_DESCRIPTION("Harness self-test: fail on load");
MODULE_LICENSE("GPL");
