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
        // Retries 2, 5 and 10 s apart: room to change the endpoint's answer between them on a busy machine.
        await using var t = await Setup.StartAsync(waits: true, endpointAnswers: 503, [TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(10)]);
        await Emu.UsageAsync(t.Client, t.Customer, 40);

        // The period ends and the endpoint refuses the draft's invoice.created: two hours on, it is still a draft.
        await t.Server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(2), Emu.Ct);
        var draft = await CycleInvoiceAsync(t.Client, t.SubscriptionId);
        Assert.Equal("draft", draft.Status);
        var eventId = await InvoiceCreatedEventAsync(t.Client, draft.Id);

        // Late usage for the period is still billed while it waits; then the endpoint answers and a retry lands.
        await Emu.UsageAsync(t.Client, t.Customer, 2, at: draft.PeriodEnd.AddMinutes(-5));
        t.Receiver!.Status = 200;
        await WaitUntilAsync(async () => (await t.Server.Admin.GetWebhookDeliveriesAsync(Emu.Ct)).Any(d => d.EventId == eventId && d.Succeeded));
        var deliveredAt = await t.Server.Admin.GetNowAsync(Emu.Ct);

        await t.Server.Admin.AdvanceClockAsync(TimeSpan.FromMinutes(59), Emu.Ct);
        Assert.Equal("draft", (await t.Client.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct)).Status);
        await t.Server.Admin.AdvanceClockAsync(TimeSpan.FromMinutes(2), Emu.Ct);
        var final = await t.Client.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct);
        Assert.Equal("paid", final.Status);
        var finalizedAt = new DateTimeOffset(DateTime.SpecifyKind(final.StatusTransitions.FinalizedAt!.Value, DateTimeKind.Utc));
        Assert.Equal(deliveredAt.AddHours(1).ToUnixTimeSeconds(), finalizedAt.ToUnixTimeSeconds());
        Assert.Equal(42, final.Lines.Data.Single(l => l.Pricing?.PriceDetails?.PriceId == t.MeteredPriceId).Quantity);
    }

    [Fact]
    public async Task WaitsForWebhooks_EveryRetryFails_FinalizesAGracePeriodAfterTheLast()
    {
        await using var t = await Setup.StartAsync(waits: true, endpointAnswers: 500);

        await t.Server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromMinutes(1), Emu.Ct);
        var draft = await CycleInvoiceAsync(t.Client, t.SubscriptionId);
        var eventId = await InvoiceCreatedEventAsync(t.Client, draft.Id);
        await WaitUntilAsync(async () => (await t.Server.Admin.GetWebhookDeliveriesAsync(Emu.Ct)).Count(d => d.EventId == eventId) == 4 && t.Server.Admin.PendingWebhookDeliveries == 0);
        Assert.Equal("draft", (await t.Client.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct)).Status);

        await t.Server.Admin.AdvanceClockAsync(TimeSpan.FromHours(1) + TimeSpan.FromMinutes(1), Emu.Ct);
        Assert.Equal("paid", (await t.Client.V1.Invoices.GetAsync(draft.Id, cancellationToken: Emu.Ct)).Status);
    }

    [Fact]
    public async Task WaitsForWebhooks_NoEndpointListens_FinalizesAGracePeriodAfterCreation()
    {
        await using var t = await Setup.StartAsync(waits: true, endpointAnswers: null);

        await t.Server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(2), Emu.Ct);

        Assert.Equal("paid", (await CycleInvoiceAsync(t.Client, t.SubscriptionId)).Status);
    }

    [Fact]
    public async Task Default_DraftFinalizesAGracePeriodAfterCreation_WhateverItsWebhooksAnswer()
    {
        await using var t = await Setup.StartAsync(waits: false, endpointAnswers: 503);

        await t.Server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(2), Emu.Ct);

        Assert.Equal("paid", (await CycleInvoiceAsync(t.Client, t.SubscriptionId)).Status);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(11 * 60 * 1000)]
    public void WebhookRetryDelays_OutOfRange_RefusedAtStart(int milliseconds)
    {
        var options = new StripeEmulatorOptions { WebhookRetryDelays = [TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(milliseconds)] };

        var ex = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);

        Assert.Equal(nameof(StripeEmulatorOptions.WebhookRetryDelays), ex.ParamName);
        Assert.Contains("between 1 ms and 10 minutes", ex.Message, StringComparison.Ordinal);
        new StripeEmulatorOptions { WebhookRetryDelays = [] }.Validate(); // no retries: one attempt
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

    /// <summary>An emulator with a hybrid plan's subscription, and an endpoint for invoice.created answering a status (none when null).</summary>
    private sealed record Setup(StripeEmulatorServer Server, WebhookReceiver? Receiver, StripeClient Client, string Customer, string SubscriptionId, string MeteredPriceId) : IAsyncDisposable
    {
        public static async Task<Setup> StartAsync(bool waits, int? endpointAnswers, IReadOnlyList<TimeSpan>? retryDelays = null)
        {
            var (server, _) = await Emu.StartAsync(o =>
            {
                o.InvoiceFinalizationWaitsForWebhooks = waits;
                o.WebhookRetryDelays = retryDelays ?? o.WebhookRetryDelays;
            });
            var c = Emu.Client(server);
            WebhookReceiver? receiver = null;
            if (endpointAnswers is { } status)
            {
                receiver = await WebhookReceiver.StartAsync();
                receiver.Status = status;
                await c.V1.WebhookEndpoints.CreateAsync(new WebhookEndpointCreateOptions { Url = receiver.Url.ToString(), EnabledEvents = ["invoice.created"] }, cancellationToken: Emu.Ct);
            }

            var plan = await Plans.HybridAsync(c);
            var cus = await Emu.CustomerAsync(c);
            var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
            return new Setup(server, receiver, c, cus.Id, sub.Id, plan.Metered.Id);
        }

        public async ValueTask DisposeAsync()
        {
            if (Receiver is not null)
            {
                await Receiver.DisposeAsync();
            }

            await Server.DisposeAsync();
        }
    }
}
