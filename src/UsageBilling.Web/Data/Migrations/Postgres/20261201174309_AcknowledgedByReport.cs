using System;
using Microsoft.EntityFrameworkCore.Migrations;
using UsageBilling.EntityFrameworkCore;

#nullable disable

namespace UsageBilling.Web.Data.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class AcknowledgedByReport : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Before the stamps go: the rollups' acknowledged columns follow the reports' status from now on.
            migrationBuilder.AcknowledgeUsageByReport();

            migrationBuilder.DropIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events");

            migrationBuilder.DropColumn(
                name: "reported_at",
                table: "usage_events");

            migrationBuilder.CreateIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events",
                columns: new[] { "user_id", "occurred_at", "meter" })
                .Annotation("Npgsql:IndexInclude", new[] { "quantity", "report_id" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events");

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "reported_at",
                table: "usage_events",
                type: "timestamp with time zone",
                nullable: true);

            // Stamps the events again from their reports (the rollups already agree with the reports).
            migrationBuilder.Sql("UPDATE usage_events SET reported_at = (SELECT r.sent_at FROM usage_reports r WHERE r.id = usage_events.report_id AND r.status = 'sent') WHERE report_id IS NOT NULL;");

            migrationBuilder.CreateIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events",
                columns: new[] { "user_id", "occurred_at", "meter" })
                .Annotation("Npgsql:IndexInclude", new[] { "quantity", "reported_at" });
        }
    }
}
