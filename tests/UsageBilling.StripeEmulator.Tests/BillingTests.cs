using System.Net;
using Stripe;
using Stripe.Billing;

namespace UsageBilling.StripeEmulator.Tests;

/// <summary>A hybrid plan: a flat licensed price and a graduated metered price whose first tier is free.</summary>
internal sealed record Plan(Product Product, Meter Meter, Price Flat, Price Metered);

internal static class Plans
{
    public static async Task<Plan> HybridAsync(StripeClient c, string tiersMode = "graduated")
    {
        var meter = await Emu.MeterAsync(c);
        var product = await c.V1.Products.CreateAsync(new ProductCreateOptions { Name = "Pro" }, cancellationToken: Emu.Ct);
        var flat = await c.V1.Prices.CreateAsync(new PriceCreateOptions
        {
            Product = product.Id,
            Currency = "usd",
            UnitAmount = 2900,
            LookupKey = "pro_monthly",
            Recurring = new PriceRecurringOptions { Interval = "month" },
        }, cancellationToken: Emu.Ct);
        var metered = await c.V1.Prices.CreateAsync(new PriceCreateOptions
        {
            Product = product.Id,
            Currency = "usd",
            LookupKey = "pro_ai_messages",
            BillingScheme = "tiered",
            TiersMode = tiersMode,
            Tiers =
            [
                new PriceTierOptions { UpTo = 1000, UnitAmount = 0 },
                new PriceTierOptions { UpTo = PriceTierUpTo.Inf, UnitAmount = 2 },
            ],
            Recurring = new PriceRecurringOptions { Interval = "month", UsageType = "metered", Meter = meter.Id },
        }, cancellationToken: Emu.Ct);
        return new Plan(product, meter, flat, metered);
    }

    public static Task<Subscription> SubscribeAsync(StripeClient c, string customer, Plan plan) =>
        c.V1.Subscriptions.CreateAsync(new SubscriptionCreateOptions
        {
            Customer = customer,
            Items = [new SubscriptionItemOptions { Price = plan.Flat.Id }, new SubscriptionItemOptions { Price = plan.Metered.Id }],
        }, cancellationToken: Emu.Ct);
}

public sealed class CatalogTests
{
    [Fact]
    public async Task Customers_CreateGetUpdateListDelete()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);

        var cus = await c.V1.Customers.CreateAsync(new CustomerCreateOptions { Email = "a@example.com", Name = "Ada", Metadata = new() { ["user_id"] = "42" } }, cancellationToken: Emu.Ct);
        var updated = await c.V1.Customers.UpdateAsync(cus.Id, new CustomerUpdateOptions { Name = "Ada L." }, cancellationToken: Emu.Ct);
        var got = await c.V1.Customers.GetAsync(cus.Id, cancellationToken: Emu.Ct);
        var listed = await c.V1.Customers.ListAsync(new CustomerListOptions { Email = "a@example.com" }, cancellationToken: Emu.Ct);
        var deleted = await c.V1.Customers.DeleteAsync(cus.Id, cancellationToken: Emu.Ct);

        Assert.StartsWith("cus_", cus.Id, StringComparison.Ordinal);
        Assert.Equal(("Ada L.", "42"), (updated.Name, got.Metadata["user_id"]));
        Assert.Equal(cus.Id, Assert.Single(listed.Data).Id);
        Assert.True(deleted.Deleted);
    }

    [Fact]
    public async Task Prices_Metered_RequireMeter()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var product = await c.V1.Products.CreateAsync(new ProductCreateOptions { Name = "P" }, cancellationToken: Emu.Ct);

        var ex = await Assert.ThrowsAsync<StripeException>(() => c.V1.Prices.CreateAsync(new PriceCreateOptions
        {
            Product = product.Id,
            Currency = "usd",
            UnitAmount = 1,
            Recurring = new PriceRecurringOptions { Interval = "month", UsageType = "metered" },
        }, cancellationToken: Emu.Ct));

        Assert.Equal((HttpStatusCode.BadRequest, "recurring[meter]"), (ex.HttpStatusCode, ex.StripeError.Param));
    }

    [Fact]
    public async Task Prices_TieredAndLookupKeys_RoundTripAndFilter()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);

        var byKey = await c.V1.Prices.ListAsync(new PriceListOptions { LookupKeys = ["pro_ai_messages"] }, cancellationToken: Emu.Ct);
        var both = await c.V1.Prices.ListAsync(new PriceListOptions { LookupKeys = ["pro_ai_messages", "pro_monthly"] }, cancellationToken: Emu.Ct);
        var got = await c.V1.Prices.GetAsync(plan.Metered.Id, cancellationToken: Emu.Ct);

        Assert.Equal(plan.Metered.Id, Assert.Single(byKey.Data).Id);
        Assert.Equal(2, both.Data.Count);
        Assert.Equal(("tiered", "graduated", "metered", plan.Meter.Id), (got.BillingScheme, got.TiersMode, got.Recurring.UsageType, got.Recurring.Meter));
        Assert.Equal([1000L, null], got.Tiers.Select(t => t.UpTo));
        Assert.Equal([0L, 2L], got.Tiers.Select(t => t.UnitAmount));
        Assert.Equal(2900, plan.Flat.UnitAmount);
    }

    [Fact]
    public async Task Prices_DuplicateLookupKey_Returns400UnlessTransferred()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var options = new PriceCreateOptions
        {
            Product = plan.Product.Id,
            Currency = "usd",
            UnitAmount = 3900,
            LookupKey = "pro_monthly",
            Recurring = new PriceRecurringOptions { Interval = "month" },
        };

        var ex = await Assert.ThrowsAsync<StripeException>(() => c.V1.Prices.CreateAsync(options, cancellationToken: Emu.Ct));
        options.TransferLookupKey = true;
        var moved = await c.V1.Prices.CreateAsync(options, cancellationToken: Emu.Ct);
        var byKey = await c.V1.Prices.ListAsync(new PriceListOptions { LookupKeys = ["pro_monthly"] }, cancellationToken: Emu.Ct);

        Assert.Equal("lookup_key", ex.StripeError.Param);
        Assert.Equal(moved.Id, Assert.Single(byKey.Data).Id);
    }

    [Theory]
    [InlineData("graduated", 0, 0)]
    [InlineData("graduated", 1000, 0)]
    [InlineData("graduated", 1500, 1000)]
    [InlineData("volume", 1000, 0)]
    [InlineData("volume", 1500, 3000)]
    [InlineData("graduated", -50, 0)]
    public void PriceAmount_Tiers(string mode, long qty, long expectedCents)
    {
        var price = new State.Price
        {
            Id = "price_x",
            ProductId = "prod_x",
            Currency = "usd",
            BillingScheme = "tiered",
            TiersMode = mode,
            Tiers = [new State.PriceTier { UpTo = 1000, UnitAmount = 0 }, new State.PriceTier { UpTo = null, UnitAmount = 2 }],
        };

        Assert.Equal(expectedCents, State.BillingStore.PriceAmount(price, qty));
    }

    [Fact]
    public void PriceAmount_GraduatedFlatAmountsAndPerUnit()
    {
        var tiered = new State.Price
        {
            Id = "price_x",
            ProductId = "prod_x",
            Currency = "usd",
            BillingScheme = "tiered",
            TiersMode = "graduated",
            Tiers = [new State.PriceTier { UpTo = 10, UnitAmount = 5, FlatAmount = 100 }, new State.PriceTier { UpTo = null, UnitAmount = 1, FlatAmount = 50 }],
        };
        var perUnit = new State.Price { Id = "price_y", ProductId = "prod_x", Currency = "usd", UnitAmount = 0.5m };

        Assert.Equal(100 + 50 + 50 + 5, State.BillingStore.PriceAmount(tiered, 15));
        Assert.Equal(150, State.BillingStore.PriceAmount(tiered, 10));
        Assert.Equal(2, State.BillingStore.PriceAmount(perUnit, 3));
    }
}

public sealed class SubscriptionAndInvoiceTests
{
    [Fact]
    public async Task Create_HybridSubscription_ItemsCarryCurrentPeriod()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);

        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);

        Assert.Equal("active", sub.Status);
        Assert.Equal(2, sub.Items.Data.Count);
        Assert.All(sub.Items.Data, i =>
        {
            Assert.Equal(Emu.T0.UtcDateTime, i.CurrentPeriodStart);
            Assert.Equal(Emu.T0.AddMonths(1).UtcDateTime, i.CurrentPeriodEnd);
        });
        Assert.Equal(1, sub.Items.Data.Single(i => i.Price.Id == plan.Flat.Id).Quantity);
        var first = await c.V1.Invoices.GetAsync(sub.LatestInvoiceId, cancellationToken: Emu.Ct);
        Assert.Equal(("paid", 2900L, "subscription_create"), (first.Status, first.Total, first.BillingReason));
    }

    [Fact]
    public async Task Create_MeteredItemWithQuantity_Returns400()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);

        var ex = await Assert.ThrowsAsync<StripeException>(() => c.V1.Subscriptions.CreateAsync(new SubscriptionCreateOptions
        {
            Customer = cus.Id,
            Items = [new SubscriptionItemOptions { Price = plan.Metered.Id, Quantity = 3 }],
        }, cancellationToken: Emu.Ct));

        Assert.Equal("items[0][quantity]", ex.StripeError.Param);
    }

    [Fact]
    public async Task PeriodEnd_CreatesDraftWithUsageInArrearsAndNextFlatFee_FinalizedAfterGrace()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
        var periodEnd = Emu.T0.AddMonths(1);
        time.Advance(TimeSpan.FromDays(10));
        await Emu.UsageAsync(c, cus.Id, 1200, identifier: "in-period");

        time.SetUtcNow(periodEnd.AddMinutes(30));
        var draft = (await c.V1.Invoices.ListAsync(new InvoiceListOptions { Subscription = sub.Id, Status = "draft" }, cancellationToken: Emu.Ct)).Data.Single();
        await Emu.UsageAsync(c, cus.Id, 300, identifier: "grace", at: periodEnd.AddSeconds(-10));
        await Emu.UsageAsync(c, cus.Id, 50, identifier: "next-period", at: periodEnd.AddMinutes(1));
        var renewed = await c.V1.Subscriptions.GetAsync(sub.Id, cancellationToken: Emu.Ct);

        time.SetUtcNow(periodEnd.AddHours(1));
        var final = await c.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct);
        time.Advance(TimeSpan.FromMinutes(5));
        await Emu.UsageAsync(c, cus.Id, 10_000, identifier: "too-late", at: periodEnd.AddSeconds(-5));
        var after = await c.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct);

        Assert.Equal((Emu.T0.UtcDateTime, periodEnd.UtcDateTime), (draft.PeriodStart, draft.PeriodEnd));
        Assert.Equal(periodEnd.UtcDateTime, renewed.Items.Data[0].CurrentPeriodStart);
        Assert.Equal(periodEnd.AddMonths(1).UtcDateTime, renewed.Items.Data[0].CurrentPeriodEnd);
        Assert.Equal("paid", final.Status);
        Assert.Equal(periodEnd.AddHours(1).UtcDateTime, final.StatusTransitions.FinalizedAt);
        var usageLine = final.Lines.Data.Single(l => l.Pricing.PriceDetails.PriceId == plan.Metered.Id);
        var flatLine = final.Lines.Data.Single(l => l.Pricing.PriceDetails.PriceId == plan.Flat.Id);
        Assert.Equal((1500L, 1000L), (usageLine.Quantity ?? 0, usageLine.Amount));
        Assert.Equal((Emu.T0.UtcDateTime, periodEnd.UtcDateTime), (usageLine.Period.Start, usageLine.Period.End));
        Assert.Equal((2900L, periodEnd.UtcDateTime, periodEnd.AddMonths(1).UtcDateTime), (flatLine.Amount, flatLine.Period.Start, flatLine.Period.End));
        Assert.Equal(3900L, final.Total);
        Assert.Equal(final.Total, after.Total);
    }

    [Fact]
    public async Task FinalizedInvoices_AreNumberedPerCustomer_WithAHostedPage_DraftsHaveNeither()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
        time.Advance(TimeSpan.FromDays(3));
        await Emu.UsageAsync(c, cus.Id, 1200, identifier: "in-period");
        var periodEnd = Emu.T0.AddMonths(1);

        time.SetUtcNow(periodEnd.AddMinutes(10));
        var draft = (await c.V1.Invoices.ListAsync(new InvoiceListOptions { Subscription = sub.Id, Status = "draft" }, cancellationToken: Emu.Ct)).Data.Single();
        time.SetUtcNow(periodEnd.AddHours(2));
        var invoices = (await c.V1.Invoices.ListAsync(new InvoiceListOptions { Customer = cus.Id }, cancellationToken: Emu.Ct)).Data;
        var cycle = invoices.Single(i => i.Id == draft.Id);
        var first = invoices.Single(i => i.BillingReason == "subscription_create");
        using var http = new HttpClient();
        using var page = await http.GetAsync(new Uri(cycle.HostedInvoiceUrl), Emu.Ct);
        var html = await page.Content.ReadAsStringAsync(Emu.Ct);
        using var draftPage = await http.GetAsync(new Uri(server.BaseUrl, $"/_emulator/invoices/{draft.Id}x"), Emu.Ct);

        Assert.Null(draft.Number);
        Assert.Null(draft.HostedInvoiceUrl);
        Assert.Matches("^[0-9A-F]{8}-0001$", first.Number);
        Assert.Equal(first.Number[..8] + "-0002", cycle.Number);
        Assert.Equal($"{server.ApiBase}/_emulator/invoices/{cycle.Id}", cycle.HostedInvoiceUrl);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains($"<span data-testid=\"number\">{cycle.Number}</span>", html, StringComparison.Ordinal);
        Assert.Equal(2900L + 400L, cycle.Total);
        Assert.Contains($"<strong data-testid=\"total\">{(cycle.Total / 100m).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)} USD</strong>", html, StringComparison.Ordinal);
        Assert.Contains("<td>1200</td>", html, StringComparison.Ordinal);
        Assert.Equal(1200L, cycle.Lines.Data.Single(l => l.Pricing.PriceDetails.PriceId == plan.Metered.Id).Quantity);
        Assert.Equal(HttpStatusCode.NotFound, draftPage.StatusCode);
    }

    [Fact]
    public async Task PeriodEnd_NegativeUsageTotal_Bills0()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
        await Emu.UsageAsync(c, cus.Id, 5);
        await Emu.UsageAsync(c, cus.Id, -2000);

        await server.Admin.SetClockAsync(Emu.T0.AddMonths(1).AddHours(2), Emu.Ct);
        var inv = (await c.V1.Invoices.ListAsync(new InvoiceListOptions { Subscription = sub.Id }, cancellationToken: Emu.Ct)).Data[0];

        var usage = inv.Lines.Data.Single(l => l.Pricing.PriceDetails.PriceId == plan.Metered.Id);
        Assert.Equal((0L, 0L), (usage.Quantity ?? -1, usage.Amount));
        Assert.Equal(2900L, inv.Total);
    }

    [Fact]
    public async Task PeriodEnd_CanceledEventAndItsResend_InvoiceBillsTheCorrectedUsage()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
        time.Advance(TimeSpan.FromDays(3));
        await Emu.UsageAsync(c, cus.Id, 1500, identifier: "report-1");
        time.Advance(TimeSpan.FromHours(20));

        // A correction: cancel the report within 24 h of receipt, resend what remains under a new identifier.
        var cancel = new MeterEventAdjustmentCreateOptions { EventName = "ai_messages", Type = "cancel", Cancel = new() { Identifier = "report-1" } };
        await c.V1.Billing.MeterEventAdjustments.CreateAsync(cancel, cancellationToken: Emu.Ct);
        await c.V1.Billing.MeterEventAdjustments.CreateAsync(cancel, cancellationToken: Emu.Ct);
        await Emu.UsageAsync(c, cus.Id, 1200, identifier: "report-2", at: Emu.T0.AddDays(3));
        var summary = (await c.V1.Billing.Meters.EventSummaries.ListAsync(plan.Meter.Id, new MeterEventSummaryListOptions
        {
            Customer = cus.Id,
            StartTime = Emu.T0.UtcDateTime,
            EndTime = Emu.T0.AddMonths(1).UtcDateTime,
        }, cancellationToken: Emu.Ct)).Data.Single();

        await server.Admin.SetClockAsync(Emu.T0.AddMonths(1).AddHours(2), Emu.Ct);
        var inv = (await c.V1.Invoices.ListAsync(new InvoiceListOptions { Subscription = sub.Id }, cancellationToken: Emu.Ct)).Data[0];

        Assert.Equal(1200m, summary.AggregatedValue);
        var usage = inv.Lines.Data.Single(l => l.Pricing.PriceDetails.PriceId == plan.Metered.Id);
        Assert.Equal((1200L, 400L), (usage.Quantity ?? -1, usage.Amount));
        Assert.Equal(2900L + 400L, inv.Total);
    }

    [Fact]
    public async Task PeriodEnd_CompensatingNegativeEvent_InvoiceBillsTheNetUsage()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
        time.Advance(TimeSpan.FromDays(1));
        await Emu.UsageAsync(c, cus.Id, 1500, identifier: "report-1");
        time.Advance(TimeSpan.FromDays(2));

        // Past the cancel window: a negative event with the first one's timestamp lands in the same period.
        await Assert.ThrowsAsync<StripeException>(() => c.V1.Billing.MeterEventAdjustments.CreateAsync(
            new MeterEventAdjustmentCreateOptions { EventName = "ai_messages", Type = "cancel", Cancel = new() { Identifier = "report-1" } }, cancellationToken: Emu.Ct));
        await Emu.UsageAsync(c, cus.Id, -200, identifier: "compensation-1", at: Emu.T0.AddDays(1));

        await server.Admin.SetClockAsync(Emu.T0.AddMonths(1).AddHours(2), Emu.Ct);
        var inv = (await c.V1.Invoices.ListAsync(new InvoiceListOptions { Subscription = sub.Id }, cancellationToken: Emu.Ct)).Data[0];

        var usage = inv.Lines.Data.Single(l => l.Pricing.PriceDetails.PriceId == plan.Metered.Id);
        Assert.Equal((1300L, 600L), (usage.Quantity ?? -1, usage.Amount));
    }

    [Fact]
    public async Task AdminClockAdvance_RunsPeriodEndsWithoutRequests_VolumeTiers()
    {
        var (server, _) = await Emu.StartAsync(o => o.InvoiceGracePeriod = TimeSpan.FromHours(3));
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c, tiersMode: "volume");
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
        await Emu.UsageAsync(c, cus.Id, 1500);

        await server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(2), Emu.Ct);
        var drafts = await c.V1.Invoices.ListAsync(new InvoiceListOptions { Subscription = sub.Id, Status = "draft" }, cancellationToken: Emu.Ct);
        await server.Admin.AdvanceClockAsync(TimeSpan.FromHours(1), Emu.Ct);
        var paid = await c.V1.Invoices.GetAsync(drafts.Data.Single().Id, cancellationToken: Emu.Ct);

        Assert.Equal(3000L + 2900L, paid.Total);
        Assert.Equal("paid", paid.Status);
    }

    [Fact]
    public async Task Update_CancelAtPeriodEnd_EndsSubscriptionAtPeriodEnd_AndCancelNow()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
        var other = await Plans.SubscribeAsync(c, cus.Id, plan);

        var marked = await c.V1.Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions { CancelAtPeriodEnd = true }, cancellationToken: Emu.Ct);
        var canceledNow = await c.V1.Subscriptions.CancelAsync(other.Id, cancellationToken: Emu.Ct);
        time.SetUtcNow(Emu.T0.AddMonths(1).AddMinutes(1));
        var ended = await c.V1.Subscriptions.GetAsync(sub.Id, cancellationToken: Emu.Ct);
        var active = await c.V1.Subscriptions.ListAsync(new SubscriptionListOptions { Customer = cus.Id }, cancellationToken: Emu.Ct);

        Assert.True(marked.CancelAtPeriodEnd);
        Assert.Equal("canceled", canceledNow.Status);
        Assert.Equal("canceled", ended.Status);
        Assert.Equal(Emu.T0.AddMonths(1).UtcDateTime, ended.EndedAt);
        Assert.Empty(active.Data);
    }

    [Fact]
    public async Task Update_AddAndRemoveItems()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await c.V1.Subscriptions.CreateAsync(new SubscriptionCreateOptions
        {
            Customer = cus.Id,
            Items = [new SubscriptionItemOptions { Price = plan.Flat.Id, Quantity = 2 }],
        }, cancellationToken: Emu.Ct);

        var updated = await c.V1.Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new SubscriptionItemOptions { Price = plan.Metered.Id }, new SubscriptionItemOptions { Id = sub.Items.Data[0].Id, Quantity = 3 }],
        }, cancellationToken: Emu.Ct);

        Assert.Equal(2, updated.Items.Data.Count);
        Assert.Equal(3, updated.Items.Data.Single(i => i.Price.Id == plan.Flat.Id).Quantity);
    }
}
