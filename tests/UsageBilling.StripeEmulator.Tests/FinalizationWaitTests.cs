using Stripe;

namespace UsageBilling.StripeEmulator.Tests;

/// <summary>
/// <see cref="StripeEmulatorOptions.InvoiceFinalizationWaitsForWebhooks"/>: Stripe finalizes a draft one hour after its
/// <c>invoice.created</c> was delivered (or failed its last retry), at most 72 hours after creation.
/// </summary>
public sealed class FinalizationWaitTests
{
    [Fact]
    public async Task WaitsForWebhooks_DraftFinalizesAGracePeriodAfterInvoiceCreatedIsDelivered()
    {
        var (server, _) = await Emu.StartAsync(o => o.InvoiceFinalizationWaitsForWebhooks = true);
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Status = 503;
        var c = Emu.Client(server);
        await c.V1.WebhookEndpoints.CreateAsync(new WebhookEndpointCreateOptions { Url = receiver.Url.ToString(), EnabledEvents = ["invoice.created"] }, cancellationToken: Emu.Ct);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
        await Emu.UsageAsync(c, cus.Id, 40);

        // The period ends and the endpoint refuses the draft's invoice.created: two hours on, it is still a draft.
        await server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(2), Emu.Ct);
        var draft = await CycleInvoiceAsync(c, sub.Id);
        Assert.Equal("draft", draft.Status);
        var eventId = await InvoiceCreatedEventAsync(c, draft.Id);

        // Late usage for the period is still billed while it waits; then the endpoint answers and a retry lands.
        await Emu.UsageAsync(c, cus.Id, 2, at: draft.PeriodEnd.AddMinutes(-5));
        receiver.Status = 200;
        await WaitUntilAsync(async () => (await server.Admin.GetWebhookDeliveriesAsync(Emu.Ct)).Any(d => d.EventId == eventId && d.Succeeded));
        var deliveredAt = await server.Admin.GetNowAsync(Emu.Ct);

        await server.Admin.AdvanceClockAsync(TimeSpan.FromMinutes(59), Emu.Ct);
        Assert.Equal("draft", (await c.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct)).Status);
        await server.Admin.AdvanceClockAsync(TimeSpan.FromMinutes(2), Emu.Ct);
        var final = await c.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct);
        Assert.Equal("paid", final.Status);
        var finalizedAt = new DateTimeOffset(DateTime.SpecifyKind(final.StatusTransitions.FinalizedAt!.Value, DateTimeKind.Utc));
        Assert.Equal(deliveredAt.AddHours(1).ToUnixTimeSeconds(), finalizedAt.ToUnixTimeSeconds());
        Assert.Equal(42, final.Lines.Data.Single(l => l.Pricing?.PriceDetails?.PriceId == plan.Metered.Id).Quantity);
    }

    [Fact]
    public async Task WaitsForWebhooks_EveryRetryFails_FinalizesAGracePeriodAfterTheLast()
    {
        var (server, _) = await Emu.StartAsync(o => o.InvoiceFinalizationWaitsForWebhooks = true);
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Status = 500;
        var c = Emu.Client(server);
        await c.V1.WebhookEndpoints.CreateAsync(new WebhookEndpointCreateOptions { Url = receiver.Url.ToString(), EnabledEvents = ["invoice.created"] }, cancellationToken: Emu.Ct);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);

        await server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromMinutes(1), Emu.Ct);
        var draft = await CycleInvoiceAsync(c, sub.Id);
        var eventId = await InvoiceCreatedEventAsync(c, draft.Id);
        await WaitUntilAsync(async () => (await server.Admin.GetWebhookDeliveriesAsync(Emu.Ct)).Count(d => d.EventId == eventId) == 4 && server.Admin.PendingWebhookDeliveries == 0);
        Assert.Equal("draft", (await c.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct)).Status);

        await server.Admin.AdvanceClockAsync(TimeSpan.FromHours(1) + TimeSpan.FromMinutes(1), Emu.Ct);
        Assert.Equal("paid", (await c.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct)).Status);
    }

    [Fact]
    public async Task WaitsForWebhooks_NoEndpointListens_FinalizesAGracePeriodAfterCreation()
    {
        var (server, _) = await Emu.StartAsync(o => o.InvoiceFinalizationWaitsForWebhooks = true);
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);

        await server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(2), Emu.Ct);

        Assert.Equal("paid", (await CycleInvoiceAsync(c, sub.Id)).Status);
    }

    [Fact]
    public async Task Default_DraftFinalizesAGracePeriodAfterCreation_WhateverItsWebhooksAnswer()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Status = 503;
        var c = Emu.Client(server);
        await c.V1.WebhookEndpoints.CreateAsync(new WebhookEndpointCreateOptions { Url = receiver.Url.ToString(), EnabledEvents = ["invoice.created"] }, cancellationToken: Emu.Ct);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);

        await server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(2), Emu.Ct);

        Assert.Equal("paid", (await CycleInvoiceAsync(c, sub.Id)).Status);
    }

    private static async Task<Invoice> CycleInvoiceAsync(StripeClient c, string subscriptionId) =>
        (await c.V1.Invoices.ListAsync(new InvoiceListOptions { Subscription = subscriptionId, Limit = 100 }, cancellationToken: Emu.Ct)).Data
            .Single(i => i.BillingReason == "subscription_cycle");

    private static async Task<string> InvoiceCreatedEventAsync(StripeClient c, string invoiceId) =>
        (await c.V1.Events.ListAsync(new EventListOptions { Type = "invoice.created", Limit = 100 }, cancellationToken: Emu.Ct)).Data
            .Single(e => e.Data.Object is Invoice i && i.Id == invoiceId).Id;

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out after 20 s");
            await Task.Delay(50, Emu.Ct);
        }
    }
}
