using System.Text.Json;
using Stripe;
using Stripe.Events;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.Tests;

public sealed class WebhookTests
{
    private static string TypeOf(WebhookReceiver.Received r) => JsonDocument.Parse(r.Body).RootElement.GetProperty("type").GetString()!;

    [Fact]
    public async Task WebhookEndpoint_CreatedThroughStripeNet_ReturnsWhsecSecret()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);

        var ep = await c.V1.WebhookEndpoints.CreateAsync(new WebhookEndpointCreateOptions { Url = "http://127.0.0.1:9/hook", EnabledEvents = ["invoice.created"] }, cancellationToken: Emu.Ct);
        var got = await c.V1.WebhookEndpoints.GetAsync(ep.Id, cancellationToken: Emu.Ct);

        Assert.StartsWith("we_", ep.Id, StringComparison.Ordinal);
        Assert.StartsWith("whsec_", ep.Secret, StringComparison.Ordinal);
        Assert.Null(got.Secret);
        Assert.Equal(["invoice.created"], got.EnabledEvents);
    }

    [Fact]
    public async Task SubscriptionAndInvoiceEvents_AreSignedLikeStripe_AndVerifyWithConstructEvent()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        var c = Emu.Client(server);
        var ep = await c.V1.WebhookEndpoints.CreateAsync(new WebhookEndpointCreateOptions { Url = receiver.Url.ToString(), EnabledEvents = ["*"] }, cancellationToken: Emu.Ct);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);
        await Emu.UsageAsync(c, cus.Id, 1001);

        await server.Admin.AdvanceClockAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(1), Emu.Ct);

        var types = new[] { "customer.subscription.created", "invoice.created", "invoice.finalized", "invoice.paid", "customer.subscription.updated" };
        // Deliveries are signed when sent, on the emulator clock; some went out before the clock moved, so allow the whole span.
        var now = (await server.Admin.GetNowAsync(Emu.Ct)).ToUnixTimeSeconds();
        const long tolerance = 40L * 86400;
        foreach (var type in types)
        {
            var received = await receiver.WaitForAsync(r => TypeOf(r) == type);
            Assert.Matches("^t=\\d+,v1=[0-9a-f]{64}$", received.Signature);
            var evt = EventUtility.ConstructEvent(received.Body, received.Signature, ep.Secret, tolerance, now);
            Assert.Equal("2026-10-28.endive", evt.ApiVersion);
            Assert.StartsWith("evt_", evt.Id, StringComparison.Ordinal);
        }

        var cycle = await receiver.WaitForAsync(r => TypeOf(r) == "invoice.finalized" && r.Body.Contains("subscription_cycle", StringComparison.Ordinal));
        var invoice = (Invoice)EventUtility.ConstructEvent(cycle.Body, cycle.Signature, ep.Secret, tolerance, now).Data.Object;
        Assert.Equal(2900L + 2L, invoice.Total);
        Assert.Equal(sub.Id, invoice.Parent.SubscriptionDetails.SubscriptionId);
        var tampered = cycle.Body.Replace("2902", "1", StringComparison.Ordinal);
        Assert.Throws<StripeException>(() => EventUtility.ConstructEvent(tampered, cycle.Signature, ep.Secret, tolerance, now));
        Assert.Throws<StripeException>(() => EventUtility.ConstructEvent(cycle.Body, cycle.Signature, "whsec_wrong", 300, now));
    }

    [Fact]
    public async Task MeterErrors_AreDeliveredAsThinEvents_ParseableByStripeNet()
    {
        var (server, _) = await Emu.StartAsync(o => o.WebhookSignatureClock = WebhookSignatureClock.System);
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        var c = Emu.Client(server);
        var ep = await server.Admin.AddWebhookEndpointAsync(receiver.Url, ["v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found"], Emu.Ct);
        var meter = await Emu.MeterAsync(c);

        await Emu.UsageAsync(c, "cus_unknown", 1, identifier: "ghost");
        await Emu.UsageAsync(c, "cus_unknown", 1, eventName: "no_such_meter", identifier: "lost");

        var report = await receiver.WaitForAsync(r => TypeOf(r) == "v1.billing.meter.error_report_triggered");
        var notification = c.ParseEventNotification(report.Body, report.Signature, ep.Secret);
        Assert.Equal("v1.billing.meter.error_report_triggered", notification.Type);
        var typed = Assert.IsType<V1BillingMeterErrorReportTriggeredEventNotification>(notification);
        Assert.Equal(meter.Id, typed.RelatedObject.Id);
        var full = (V1BillingMeterErrorReportTriggeredEvent)await c.V2.Core.Events.GetAsync(notification.Id, cancellationToken: Emu.Ct);
        var errorType = Assert.Single(full.Data.Reason.ErrorTypes);
        Assert.Equal("meter_event_customer_not_found", errorType.Code);
        Assert.Equal("ghost", errorType.SampleErrors.Single().Request.Identifier);

        var noMeter = await receiver.WaitForAsync(r => TypeOf(r) == "v1.billing.meter.no_meter_found");
        Assert.Equal("v1.billing.meter.no_meter_found", c.ParseEventNotification(noMeter.Body, noMeter.Signature, ep.Secret).Type);
    }

    [Fact]
    public async Task FailedDelivery_IsRetried()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Status = 500;
        var c = Emu.Client(server);
        await server.Admin.AddWebhookEndpointAsync(receiver.Url, ["customer.subscription.created"], Emu.Ct);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);

        await Plans.SubscribeAsync(c, cus.Id, plan);
        var first = await receiver.WaitForAsync(_ => true);
        receiver.Status = 200;
        var eventId = JsonDocument.Parse(first.Body).RootElement.GetProperty("id").GetString();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        IReadOnlyList<WebhookDeliveryInfo> log;
        do
        {
            await Task.Delay(100, Emu.Ct);
            log = await server.Admin.GetWebhookDeliveriesAsync(Emu.Ct);
        }
        while (!log.Any(d => d.Succeeded) && DateTime.UtcNow < deadline);

        Assert.Equal([(1, false), (2, true)], log.Where(d => d.EventId == eventId).Select(d => (d.Attempt, d.Succeeded)));
    }
    [Fact]
    public async Task Events_AreListedAndRetrievable_ThroughStripeNet()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var sub = await Plans.SubscribeAsync(c, cus.Id, plan);

        var created = await c.V1.Events.ListAsync(new EventListOptions { Type = "customer.subscription.created" }, cancellationToken: Emu.Ct);
        var evt = await c.V1.Events.GetAsync(created.Data.Single().Id, cancellationToken: Emu.Ct);

        Assert.Equal(sub.Id, ((Subscription)evt.Data.Object).Id);
        Assert.Equal("2026-10-28.endive", evt.ApiVersion);
    }
    [Fact]
    public async Task SharedFakeClock_PeriodEndFiresWebhooksWithoutAnyRequest()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        var c = Emu.Client(server);
        await server.Admin.AddWebhookEndpointAsync(receiver.Url, ["invoice.created"], Emu.Ct);
        var plan = await Plans.HybridAsync(c);
        var cus = await Emu.CustomerAsync(c);
        await Plans.SubscribeAsync(c, cus.Id, plan);
        await receiver.WaitForAsync(r => r.Body.Contains("subscription_create", StringComparison.Ordinal));

        time.Advance(TimeSpan.FromDays(31) + TimeSpan.FromSeconds(1));

        var cycle = await receiver.WaitForAsync(r => r.Body.Contains("subscription_cycle", StringComparison.Ordinal));
        Assert.Contains("\"status\":\"draft\"", cycle.Body, StringComparison.Ordinal);
    }
}
